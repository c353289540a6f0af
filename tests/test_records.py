"""Records: the Exemplar schema and JSONL I/O that reports, never hides, a bad line."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from persrm_utils import records
from persrm_utils.errors import DataError
from persrm_utils.records import (
    Exemplar,
    TextRecord,
    append_jsonl,
    read_jsonl,
    read_jsonl_numbered,
    read_jsonl_report,
    truncate_partial_tail,
    write_jsonl,
)


def _ex(i: int = 1, **kw: object) -> Exemplar:
    base: dict[str, object] = {
        "author_id": "ann",
        "text_id": f"t{i}",
        "prompt": "The opening sentence.",
        "output": f"What came next, number {i}.",
        "source": "own",
    }
    base.update(kw)
    return Exemplar.model_validate(base)


def _line(**kw: object) -> str:
    obj: dict[str, object] = {
        "author_id": "ann",
        "text_id": "t1",
        "prompt": "Hello there.",
        "output": "General Kenobi.",
        "source": "own",
    }
    obj.update(kw)
    return json.dumps({k: v for k, v in obj.items() if v is not ...}, ensure_ascii=False)


def _write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------


def test_exemplar_defaults_and_meta_types() -> None:
    ex = _ex(meta={"line": 3, "split": "train", "score": 0.5})
    assert ex.meta == {"line": 3, "split": "train", "score": 0.5}
    assert isinstance(ex.meta["line"], int)
    assert _ex().meta == {}
    assert _ex().meta is not _ex().meta  # no shared mutable default


@pytest.mark.parametrize("field", ["prompt", "output", "author_id", "text_id"])
@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_exemplar_rejects_empty_text(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        _ex(**{field: value})


def test_exemplar_rejects_unknown_field_and_source() -> None:
    with pytest.raises(ValidationError, match="extra"):
        _ex(label="A")
    with pytest.raises(ValidationError, match="source"):
        _ex(source="web")


# ----------------------------------------------------------------------------------------------
# Reading: happy path
# ----------------------------------------------------------------------------------------------


def test_round_trip_keeps_unicode_readable(tmp_path: Path) -> None:
    recs = [_ex(1, output="Café déjà vu — naïve “quotes”."), _ex(2)]
    path = write_jsonl(tmp_path / "sub" / "ex.jsonl", recs)
    assert read_jsonl(path, Exemplar) == recs
    raw = path.read_text(encoding="utf-8")
    assert "Café déjà vu — naïve “quotes”." in raw  # not \\u-escaped
    assert raw.count("\n") == 2


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.jsonl", "", _line(text_id="x"), "   ", "", _line(text_id="y"), "")
    numbered = read_jsonl_numbered(path, Exemplar)
    assert [(n, r.text_id) for n, r in numbered] == [(2, "x"), (5, "y")]


def test_crlf_and_bom_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "win.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (_line() + "\r\n" + _line(text_id="t2") + "\r\n").encode())
    assert [r.text_id for r in read_jsonl(path, Exemplar)] == ["t1", "t2"]


# ----------------------------------------------------------------------------------------------
# Reading: every bad line is named with file, line, field and fix
# ----------------------------------------------------------------------------------------------


def _error(path: Path, model: type = Exemplar) -> DataError:
    with pytest.raises(DataError) as info:
        read_jsonl(path, model)
    return info.value


def test_malformed_json_names_file_line_and_fix(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", _line(), _line(), '{"author_id": "ann", "text_id": ')
    err = _error(path)
    msg = str(err)
    assert "bad.jsonl" in msg and "line 3" in msg and "not valid JSON" in msg
    assert err.line == 3 and err.path == str(path)
    assert "Fix:" in msg and "one complete JSON object" in msg


def test_first_bad_line_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path / "two.jsonl", _line(), _line(prompt=""), "{not json")
    err = _error(path)
    assert err.line == 2 and err.field == "prompt"


def test_missing_field(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.jsonl", _line(), _line(output=...))
    err = _error(path)
    assert (err.line, err.field) == (2, "output")
    assert "m.jsonl, line 2, field 'output': missing field 'output'" in str(err)
    assert 'add "output"' in str(err)


def test_wrong_type(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "w.jsonl", _line(author_id=42)))
    assert (err.line, err.field) == (1, "author_id")
    assert "int" in str(err) and "42" in str(err) and "Fix:" in str(err)


def test_empty_text(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "e.jsonl", _line(), _line(prompt="  ")))
    assert (err.line, err.field) == (2, "prompt")
    assert "empty or only whitespace" in str(err) and "Fix:" in str(err)


def test_unknown_field_lists_the_known_ones(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "u.jsonl", _line(lable="A")))
    assert (err.line, err.field) == (1, "lable")
    assert "unknown field 'lable'" in str(err) and "author_id, text_id, prompt" in str(err)


def test_bad_literal_value(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "s.jsonl", _line(source="web")))
    assert err.field == "source" and "'c50'" in str(err)


def test_not_an_object(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "l.jsonl", _line(), '["a", "b"]'))
    assert err.line == 2 and "not an object" in str(err)


def test_non_utf8_names_line_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    first = (_line() + "\n").encode()
    path.write_bytes(first + _line(output="Caf\u00e9 au lait.").encode("latin-1") + b"\n")
    err = _error(path)
    msg = str(err)
    offset = len(first) + _line(output="Caf\u00e9").encode("latin-1").index(b"\xe9")
    assert err.line == 2 and "0xe9" in msg and f"byte offset {offset}" in msg
    assert "re-save the file as UTF-8" in msg


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "nope.jsonl", Exemplar)
    with pytest.raises(DataError, match="is a folder"):
        read_jsonl(tmp_path, Exemplar)


def test_text_record_schema(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", json.dumps({"author_id": "a", "text_id": "1", "text": ""}))
    err = _error(path, TextRecord)
    assert err.field == "text" and err.line == 1


# ----------------------------------------------------------------------------------------------
# Writing atomically
# ----------------------------------------------------------------------------------------------


def test_interrupted_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ex.jsonl", [_ex(1)])
    before = path.read_bytes()

    def exploding():
        yield _ex(2)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_jsonl(path, exploding())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ex.jsonl"]


def test_written_file_respects_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_jsonl(tmp_path / "perm.jsonl", [_ex()])
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------------------------
# Appending durably, and resuming after a killed process
# ----------------------------------------------------------------------------------------------


def test_append_fsyncs_every_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(records.os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    path = tmp_path / "cache.jsonl"
    for i in range(3):
        append_jsonl(path, _ex(i))
    assert len(calls) == 3
    assert [r.text_id for r in read_jsonl(path, Exemplar)] == ["t0", "t1", "t2"]


def _killed_mid_append(path: Path, n_complete: int, tail: bytes) -> None:
    for i in range(n_complete):
        append_jsonl(path, _ex(i))
    with path.open("ab") as fh:
        fh.write(tail)


def test_truncated_tail_is_an_error_unless_tolerated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.jsonl"
    tail = _line()[:25].encode()
    _killed_mid_append(path, 2, tail)
    with pytest.raises(DataError) as info:
        read_jsonl(path, Exemplar)
    assert info.value.line == 3
    with caplog.at_level(logging.WARNING, logger="persrm_utils.records"):
        result = read_jsonl_report(path, Exemplar, tolerate_truncated_tail=True)
    assert [r.text_id for r in result.records] == ["t0", "t1"]
    assert result.truncated_tail_bytes == len(tail)
    assert f"({len(tail)} bytes)" in caplog.text
    assert len(read_jsonl(path, Exemplar, tolerate_truncated_tail=True)) == 2


def test_tail_cut_inside_a_multibyte_character_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    full = _line(output="Déjà vu, encore.").encode()
    _killed_mid_append(path, 1, full[: full.index("é".encode()) + 1])
    result = read_jsonl_report(path, Exemplar, tolerate_truncated_tail=True)
    assert len(result.records) == 1 and result.truncated_tail_bytes > 0


def test_bad_line_mid_file_is_never_tolerated(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", _line(), '{"author_id": "ann", "te', _line())
    with pytest.raises(DataError) as info:
        read_jsonl(path, Exemplar, tolerate_truncated_tail=True)
    assert info.value.line == 2


def test_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(_line() + "\n" + _line(text_id="t2"), encoding="utf-8")
    result = read_jsonl_report(path, Exemplar, tolerate_truncated_tail=True)
    assert [r.text_id for r in result.records] == ["t1", "t2"]
    assert result.truncated_tail_bytes == 0
    append_jsonl(path, _ex(3))  # adds the missing newline first instead of gluing lines
    assert [r.text_id for r in read_jsonl(path, Exemplar)] == ["t1", "t2", "t3"]


def test_append_after_kill_needs_repair_then_resumes(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    _killed_mid_append(path, 2, b'{"author_id": "ann", "text_id": "t2", "pro')
    with pytest.raises(DataError, match="unfinished line") as info:
        append_jsonl(path, _ex(2))
    assert "truncate_partial_tail" in str(info.value)
    assert truncate_partial_tail(path) == len(b'{"author_id": "ann", "text_id": "t2", "pro')
    assert truncate_partial_tail(path) == 0
    append_jsonl(path, _ex(2))
    assert [r.text_id for r in read_jsonl(path, Exemplar)] == ["t0", "t1", "t2"]
