"""Record schemas and JSONL input/output that never loses or hides a bad record.

Every stage of the series hands its results to the next as a JSONL file (one JSON object per line),
because a learner can open it in any editor, ``grep`` it, and resume a stage by appending to it.
The price of a hand-editable format is hand-made mistakes, so reading is strict: the first bad line
stops the read with a :class:`~persrm_utils.errors.DataError` that names the file, the 1-based line,
the field and the fix. Writing is atomic (a reader never sees half a file) and appending is
durable (each line is flushed to disk, so a killed process loses at most the line it was writing).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from persrm_utils.errors import DataError

log = logging.getLogger(__name__)

Source = Literal["c50", "jsonl", "own", "seed", "file"]

M = TypeVar("M", bound=BaseModel)

_UTF8_FIX = (
    "re-save the file as UTF-8 (in an editor: 'Save with encoding' -> UTF-8; on the command line: "
    "iconv -f latin1 -t utf-8 in.jsonl > out.jsonl)."
)


def _require_text(value: str, info: Any) -> str:
    """Reject empty or whitespace-only strings: an empty prompt or text teaches nothing."""
    if not value.strip():
        raise ValueError(f"'{info.field_name}' is empty or only whitespace")
    return value


class Exemplar(BaseModel):
    """One piece of an author's writing: an opening sentence and what the author wrote after it.

    ``prompt`` is the opening sentence and ``output`` the author's real continuation; a reward
    model learns the author's style from a few of these (see docs/design.md section 1).
    """

    model_config = ConfigDict(extra="forbid")

    author_id: str
    text_id: str
    prompt: str
    output: str
    source: Source
    meta: dict[str, str | int | float] = Field(default_factory=dict)

    _non_empty = field_validator("author_id", "text_id", "prompt", "output")(_require_text)


class TextRecord(BaseModel):
    """One whole text by one author, before it is split into prompt and output.

    This is the schema of ``data/seed/authors.jsonl`` and of the file written by
    :func:`persrm_utils.data.corpus.save_own_texts`, so a user's own writing and the seed data are
    stored the same way.
    """

    model_config = ConfigDict(extra="forbid")

    author_id: str
    text_id: str
    text: str

    _non_empty = field_validator("author_id", "text_id", "text")(_require_text)


class JsonlRead(NamedTuple):
    """Records read from a JSONL file, plus what was left out at its end (if anything).

    ``truncated_tail_bytes`` is non-zero only when ``tolerate_truncated_tail`` was asked for and the
    last line was an unfinished write (no newline and not valid JSON): callers that resume from the
    file can then say how much they are about to redo.
    """

    records: list
    truncated_tail_bytes: int


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _decode_line(raw: bytes, path: Path, line_no: int, offset: int) -> str:
    """Decode one line as UTF-8, naming the first bad byte so the user can find it."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start]
        raise DataError(
            f"is not valid UTF-8: byte 0x{bad:02x} at byte offset {offset + exc.start} of the file "
            f"(column {exc.start + 1} of this line)",
            _UTF8_FIX,
            path=str(path),
            line=line_no,
        ) from None


def _parse_object(text: str, path: Path, line_no: int) -> dict[str, Any]:
    """Parse one line as a JSON object; anything else is reported with the JSON error position."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"is not valid JSON ({exc.msg} at column {exc.colno})",
            "each line must be one complete JSON object, e.g. "
            '{"author_id": "me", "text_id": "1", ...}; check quotes, commas and braces, and do '
            "not split one object over several lines.",
            path=str(path),
            line=line_no,
        ) from None
    if not isinstance(obj, dict):
        raise DataError(
            f"holds a JSON {type(obj).__name__}, not an object",
            'wrap the values in one object per line: {"field": value, ...}.',
            path=str(path),
            line=line_no,
        )
    return obj


def _split_lines(data: bytes) -> Iterator[tuple[int, int, bytes, bool]]:
    """Yield (1-based line number, byte offset, line bytes without newline, ended_with_newline)."""
    offset = 0
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        ended = offset + len(raw) < len(data)
        if raw or ended:
            yield line_no, offset, raw.rstrip(b"\r"), ended
        offset += len(raw) + 1


def _is_truncated_tail(raw: bytes, ended: bool) -> bool:
    """True for an unfinished last write: no final newline and not a decodable JSON value."""
    if ended:
        return False
    try:
        json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return True
    return False


def iter_jsonl_objects(
    path: Path | str, *, tolerate_truncated_tail: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for every non-blank line, stopping at the first bad one.

    Shared by :func:`read_jsonl` and by loaders with their own field names (a user's JSONL of
    texts), so every JSONL reader reports encoding and syntax errors in the same words. A truncated
    last line is skipped only when asked (and is then visible through :func:`read_jsonl_report`).
    """
    path = Path(path)
    data = _read_bytes(path)
    if data.startswith(b"\xef\xbb\xbf"):  # a BOM from Windows editors is harmless: drop it
        data = data[3:]
    for line_no, offset, raw, ended in _split_lines(data):
        if not raw.strip():
            continue
        if tolerate_truncated_tail and _is_truncated_tail(raw, ended):
            return
        text = _decode_line(raw, path, line_no, offset)
        yield line_no, _parse_object(text, path, line_no)


def iter_jsonl_checked(path: Path | str) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """Like :func:`iter_jsonl_objects`, but a bad line yields its :class:`DataError` and the
    reading goes on, so a checker can report every bad line of a file at once instead of making
    the user fix them one run at a time."""
    path = Path(path)
    data = _read_bytes(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for line_no, offset, raw, _ in _split_lines(data):
        if not raw.strip():
            continue
        try:
            yield line_no, _parse_object(_decode_line(raw, path, line_no, offset), path, line_no)
        except DataError as err:
            yield line_no, err


def _read_bytes(path: Path) -> bytes:
    """Read a whole file, turning 'not found' into an error that says where we looked."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            "file not found",
            "check the path, or run the stage that writes it first.",
            path=str(path),
        ) from None
    except IsADirectoryError:
        raise DataError(
            "is a folder, not a JSONL file", "point at the .jsonl file inside it.", path=str(path)
        ) from None


def _truncated_tail_size(path: Path) -> int:
    """Size in bytes of an unfinished last line (0 when the file ends cleanly)."""
    data = path.read_bytes() if path.exists() else b""
    if not data or data.endswith(b"\n"):
        return 0
    start = data.rfind(b"\n") + 1
    tail = data[start:]
    if not tail.strip() or not _is_truncated_tail(tail, ended=False):
        return 0
    return len(tail)


def _describe_validation_error(
    exc: ValidationError, model: type[BaseModel]
) -> tuple[str, str, str | None]:
    """Turn pydantic's first error into (problem, fix, field) a learner can act on."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    kind = err["type"]
    known = ", ".join(model.model_fields)
    if kind == "missing":
        return f"missing field '{field}'", f'add "{field}": ... to this line.', field
    if kind == "extra_forbidden":
        return (
            f"unknown field '{field}'",
            f"remove it or rename it to one of the fields of {model.__name__}: {known}.",
            field,
        )
    if kind == "value_error":
        msg = str(err.get("ctx", {}).get("error", err["msg"]))
        return msg, f"give '{field}' some text, or delete this line.", field
    value = err.get("input")
    got = type(value).__name__
    return (
        f"bad value for '{field}' ({err['msg']}; got {got} {value!r:.60})",
        f"set '{field}' to a value of the right type (the fields of {model.__name__}: {known}).",
        field,
    )


def _validate(model: type[M], obj: dict[str, Any], path: Path, line_no: int) -> M:
    """Validate one parsed line, turning pydantic's error into a DataError with the place."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        problem, fix, field = _describe_validation_error(exc, model)
        raise DataError(problem, fix, path=str(path), line=line_no, field=field) from None


def read_jsonl_numbered(path: Path | str, model: type[M]) -> list[tuple[int, M]]:
    """Like :func:`read_jsonl` but each record comes with its 1-based line number.

    For loaders that check records after reading them (e.g. "this author has only one text")
    and must still point the user at the right line.
    """
    path = Path(path)
    return [(n, _validate(model, obj, path, n)) for n, obj in iter_jsonl_objects(path)]


def read_jsonl_report(
    path: Path | str, model: type[M], *, tolerate_truncated_tail: bool = False
) -> JsonlRead:
    """Read and validate every line as ``model``, returning the records and the dropped tail size.

    Use this (rather than :func:`read_jsonl`) when resuming from a cache, so the count of bytes of
    an unfinished last write is in your hands and can be shown to the user.
    """
    path = Path(path)
    records = [
        _validate(model, obj, path, n)
        for n, obj in iter_jsonl_objects(path, tolerate_truncated_tail=tolerate_truncated_tail)
    ]
    tail = _truncated_tail_size(path) if tolerate_truncated_tail else 0
    if tail:
        log.warning(
            "%s: ignored an unfinished last line (%d bytes) left by an interrupted write; "
            "it will be redone.",
            path,
            tail,
        )
    return JsonlRead(records, tail)


def read_jsonl(
    path: Path | str, model: type[M], *, tolerate_truncated_tail: bool = False
) -> list[M]:
    """Read a JSONL file into validated ``model`` records; the first bad line raises DataError.

    Blank lines are skipped (editors add them). With ``tolerate_truncated_tail=True`` an
    unfinished last line (what a killed :func:`append_jsonl` can leave) is skipped with a logged
    warning; a bad line anywhere else is still an error, because that is damage, not interruption.
    """
    return read_jsonl_report(path, model, tolerate_truncated_tail=tolerate_truncated_tail).records


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _to_line(record: BaseModel) -> bytes:
    """One record as one UTF-8 JSON line (non-ASCII kept readable, not escaped)."""
    return record.model_dump_json().encode("utf-8") + b"\n"


def write_jsonl(path: Path | str, records: Iterable[BaseModel]) -> Path:
    """Write records to ``path`` atomically: a temporary file is fsynced, then renamed over it.

    ``os.replace`` is atomic on one file system, so a crash or Ctrl-C mid-write leaves either the
    old file or the new one, never half of each. Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "xb") rather than mkstemp: mkstemp makes the file private (0600), and the rename
    # would carry that over to a file other users and tools expect to read.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("xb") as fh:
            for record in records:
                fh.write(_to_line(record))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def truncate_partial_tail(path: Path | str) -> int:
    """Cut an unfinished last line off ``path`` so appends start on a fresh line; returns bytes cut.

    A resumable cache calls this after reading with ``tolerate_truncated_tail=True``: without it,
    the next append would be glued onto the broken fragment and corrupt a line in the middle.
    """
    path = Path(path)
    size = _truncated_tail_size(path)
    if size:
        with path.open("r+b") as fh:
            fh.truncate(path.stat().st_size - size)
            fh.flush()
            os.fsync(fh.fileno())
        log.warning("%s: removed an unfinished last line (%d bytes).", path, size)
    return size


def append_jsonl(path: Path | str, record: BaseModel) -> None:
    """Append one record as one line and fsync it, so a killed process loses at most that line.

    A file that ends without a newline is handled: a complete last record just gets its newline;
    an unfinished one raises DataError (call :func:`truncate_partial_tail` first), because
    appending onto it would silently merge two records into one broken line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = b""
    if path.exists() and path.stat().st_size:
        if _truncated_tail_size(path):
            raise DataError(
                "ends with an unfinished line (an interrupted write)",
                "read it with read_jsonl(..., tolerate_truncated_tail=True) and call "
                "truncate_partial_tail(path) before appending.",
                path=str(path),
            )
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                prefix = b"\n"
    with path.open("ab") as fh:
        fh.write(prefix + _to_line(record))
        fh.flush()
        os.fsync(fh.fileno())


# ----------------------------------------------------------------------------------------------
# Preference pairs (written by notebook 02, read by every later stage)
# ----------------------------------------------------------------------------------------------


NegativeType = Literal["style_mimic", "style_random", "minor_replace", "cross_author", "user_swap"]


NEGATIVE_TYPES: tuple[NegativeType, ...] = (
    "style_mimic",
    "style_random",
    "minor_replace",
    "cross_author",
)


LLM_TYPES: tuple[NegativeType, ...] = ("style_mimic", "style_random", "minor_replace")

#: The user-swap test's pairs (:mod:`persrm_utils.data.user_swap`): two real texts by two
#: authors, no opening shown, once with each author's exemplars. Not one of the
#: :data:`NEGATIVE_TYPES` that :func:`~persrm_utils.data.pairs.plan_pairs` deals.
USER_SWAP: NegativeType = "user_swap"


SplitName = Literal["train", "val", "test", "seen_test"]


def stable_id(*parts: str) -> str:
    """A 12-hex id that depends only on ``parts``: the same pair gets the same id in every run,
    so verdicts, caches and comparisons across runs can be joined on it."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


class Pair(BaseModel):
    """One preference pair, as written to ``pairs/<split>.jsonl``."""

    model_config = ConfigDict(extra="forbid")

    pair_id: str
    split: SplitName
    author_id: str
    text_id: str  # the exemplar whose real continuation is ``chosen``
    prompt: str
    chosen: str
    rejected: str
    negative_type: NegativeType
    exemplar_ids: list[str] = Field(min_length=0, max_length=3)
    chosen_position: Literal["A", "B"]
    negative_source: str  # "real:<text_id>" or "<backend>:<model>"
    seen_author: bool
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("chosen", "rejected")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty")
        return value

    @field_validator("prompt")
    @classmethod
    def _no_blank_prompt(cls, value: str) -> str:
        if value and not value.strip():  # "" is checked below, against the type
            raise ValueError("is only whitespace")
        return value

    @model_validator(mode="after")
    def _prompt_unless_two_real_texts(self) -> Pair:
        # a generated negative continues its opening: without it the pair makes no sense. Two
        # real texts may be judged without one (the user-swap test, and the no-opening form of
        # the cross-author set, :mod:`persrm_utils.data.cross_author_set`)
        if not self.prompt and self.negative_type not in (USER_SWAP, "cross_author"):
            raise ValueError(
                "'prompt' is empty: only a pair of two real texts (user_swap, cross_author) "
                "is judged without an opening"
            )
        return self

    @property
    def response_a(self) -> str:
        return self.chosen if self.chosen_position == "A" else self.rejected

    @property
    def response_b(self) -> str:
        return self.rejected if self.chosen_position == "A" else self.chosen
