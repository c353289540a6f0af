"""Corpus loaders: real Reuters C50, a user's JSONL or pasted texts, and the seed authors.

The C50 tests read the real copy (``$PERSRM_C50_DIR`` or ``../shared/data/reuters_c50``); if it is
missing they fail with instructions instead of skipping, so a CI without the corpus is noticed.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from persrm_utils import paths
from persrm_utils.data import corpus
from persrm_utils.data.corpus import (
    check_c50_layout,
    download_c50,
    exemplars_from_texts,
    load_c50,
    load_own_texts,
    load_seed,
    load_texts_jsonl,
    read_c50_file,
    save_own_texts,
)
from persrm_utils.data.textsplit import sentences
from persrm_utils.errors import DataError
from persrm_utils.records import TextRecord, read_jsonl


def _c50_root() -> Path:
    root = paths.find_c50()
    if root is None:
        looked = ", ".join(str(p) for p in paths.c50_candidates())
        pytest.fail(
            f"Reuters C50 not found (looked in: {looked}). Set PERSRM_C50_DIR to the folder that "
            "holds C50train/ and C50test/ (see data/README.md).",
            pytrace=False,
        )
    return root


@pytest.fixture(scope="module")
def c50_root() -> Path:
    return _c50_root()


@pytest.fixture(scope="module")
def c50_all(c50_root: Path):
    return load_c50(c50_root, split="all")


# ----------------------------------------------------------------------------------------------
# Real C50
# ----------------------------------------------------------------------------------------------


def test_c50_counts_ids_and_sources(c50_all) -> None:
    by_split = Counter(e.meta["split"] for e in c50_all)
    assert by_split == {"train": 2500, "test": 2500}
    authors = Counter(e.author_id for e in c50_all if e.meta["split"] == "train")
    assert len(authors) == 50 and set(authors.values()) == {50}
    assert len({e.text_id for e in c50_all}) == 5000
    assert all(re.fullmatch(r"(train|test)/\d+newsML", e.text_id) for e in c50_all)
    assert {e.source for e in c50_all} == {"c50"}
    first = c50_all[0]
    assert first.author_id == "AaronPressman"
    assert first.meta["file"] == f"C50train/AaronPressman/{first.text_id.split('/')[1]}.txt"


def test_every_c50_article_splits_at_its_first_line(c50_root: Path, c50_all) -> None:
    """Each prompt is the first line, or part of it, or (hard-wrapped files) extends it."""
    offenders = []
    for ex in c50_all:
        text = read_c50_file(c50_root / str(ex.meta["file"])).strip()
        first_line = " ".join(text.split("\n", 1)[0].split())
        if not (first_line.startswith(ex.prompt) or ex.prompt.startswith(first_line)):
            offenders.append(ex.meta["file"])
        assert "\r" not in ex.output and ex.prompt.strip() == ex.prompt
    assert offenders == []
    prompt_words = sorted(len(e.prompt.split()) for e in c50_all)
    assert prompt_words[0] >= 3 and prompt_words[len(prompt_words) // 2] > 20


def test_c50_order_is_deterministic_and_filters_work(c50_root: Path, c50_all) -> None:
    wanted = {"JoeOrtiz", "AaronPressman"}
    train = load_c50(c50_root, split="train", authors=sorted(wanted, reverse=True))
    assert len(train) == 100
    assert train == [e for e in c50_all if e.meta["split"] == "train" and e.author_id in wanted]
    assert train == load_c50(c50_root, split="train", authors=sorted(wanted))
    ids = [int(e.text_id.split("/")[1].removesuffix("newsML")) for e in train[:50]]
    assert ids == sorted(ids)
    capped = load_c50(c50_root, split="all", authors=["JoeOrtiz"], max_per_author=55)
    assert Counter(e.meta["split"] for e in capped) == {"train": 50, "test": 5}


def test_c50_undoes_extraction_artefacts(c50_all) -> None:
    ex = next(e for e in c50_all if e.text_id == "test/324720newsML")
    assert ex.prompt.startswith("AT&T Corp. is earning more")
    assert not any("&amp;" in e.prompt or "&amp;" in e.output for e in c50_all)


def test_c50_unknown_author_is_named(c50_root: Path) -> None:
    with pytest.raises(DataError, match=r"unknown C50 author.*AaronPresman") as info:
        load_c50(c50_root, split="train", authors=["AaronPresman"])
    assert "AaronPressman" in str(info.value)


def test_pointing_at_c50train_itself_suggests_the_parent(c50_root: Path) -> None:
    with pytest.raises(DataError, match="looks like C50train/ or C50test/ itself") as info:
        load_c50(c50_root / "C50train")
    assert str(c50_root / "C50train") in str(info.value) and "parent" in str(info.value)


def test_pointing_at_an_author_folder(c50_root: Path) -> None:
    with pytest.raises(DataError, match="one author's folder") as info:
        load_c50(c50_root / "C50train" / "AaronPressman")
    assert "two levels up" in str(info.value)


def test_missing_corpus_lists_candidates_and_env_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(paths.ENV_C50, raising=False)
    monkeypatch.setenv(paths.ENV_HOME, str(tmp_path / "home" / "project"))
    with pytest.raises(DataError) as info:
        load_c50()
    msg = str(info.value)
    assert str(tmp_path / "home" / "project" / "data" / "reuters_c50") in msg
    assert "PERSRM_C50_DIR" in msg and "download_c50" in msg
    # set explicitly, PERSRM_C50_DIR is the only place looked at: a wrong one is named
    monkeypatch.setenv(paths.ENV_C50, str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as info:
        load_c50()
    msg = str(info.value)
    assert f"{tmp_path / 'nowhere'}: PERSRM_C50_DIR points here, but folder not found" in msg
    assert "download_c50" in msg


# ----------------------------------------------------------------------------------------------
# C50 layout problems, on small corpora built in tmp
# ----------------------------------------------------------------------------------------------

_ARTICLE = "Acme Corp said on Monday profits rose.\r\nThe company sells widgets. Shares rose.\r\n"


def _fake_c50(root: Path, authors: tuple[str, ...] = ("Ann", "Bob"), n: int = 2) -> Path:
    for split in ("C50train", "C50test"):
        for a in authors:
            d = root / split / a
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{100 + i}newsML.txt").write_bytes(_ARTICLE.encode("ascii"))
    return root


def test_fake_corpus_loads(tmp_path: Path) -> None:
    ex = load_c50(_fake_c50(tmp_path / "c50"))
    assert len(ex) == 8
    assert ex[0].prompt == "Acme Corp said on Monday profits rose."
    assert ex[0].output == "The company sells widgets. Shares rose."
    assert ex[0].text_id == "train/100newsML" and ex[2].text_id == "test/100newsML"


def test_zip_parent_suggests_the_inner_folder(tmp_path: Path) -> None:
    inner = _fake_c50(tmp_path / "download" / "C50")
    with pytest.raises(DataError, match="further down") as info:
        load_c50(tmp_path / "download")
    assert f"point at {inner}" in str(info.value)


def test_unpacked_nothing_but_a_zip(tmp_path: Path) -> None:
    (tmp_path / "reuter+50+50.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match="unzip"):
        load_c50(tmp_path)


def test_wrong_folder_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="does not hold C50train/ and C50test/"):
        load_c50(tmp_path)
    with pytest.raises(DataError, match="folder not found"):
        load_c50(tmp_path / "absent")


def test_missing_test_split(tmp_path: Path) -> None:
    root = _fake_c50(tmp_path / "c50")
    for f in sorted((root / "C50test").rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    (root / "C50test").rmdir()
    with pytest.raises(DataError, match="C50test/ is missing") as info:
        load_c50(root, split="all")
    assert "split='train'" in str(info.value)
    assert len(load_c50(root, split="train")) == 4
    with pytest.raises(DataError, match="C50test/ is missing"):
        load_c50(root, split="test")


def test_author_folder_without_txt_is_named(tmp_path: Path) -> None:
    root = _fake_c50(tmp_path / "c50")
    (root / "C50train" / "Empty").mkdir()
    with pytest.raises(DataError, match=r"no \.txt files") as info:
        load_c50(root, split="train")
    assert info.value.path == str(root / "C50train" / "Empty")


def test_non_utf8_article_is_named(tmp_path: Path) -> None:
    root = _fake_c50(tmp_path / "c50")
    bad = root / "C50train" / "Bob" / "101newsML.txt"
    bad.write_bytes("Caf\u00e9 owners met on Monday. They agreed.".encode("cp1252"))
    with pytest.raises(DataError) as info:
        load_c50(root, split="train")
    assert info.value.path == str(bad)
    assert "0xe9" in str(info.value) and "byte offset 3" in str(info.value)


def test_one_sentence_article_is_named(tmp_path: Path) -> None:
    root = _fake_c50(tmp_path / "c50")
    bad = root / "C50test" / "Ann" / "100newsML.txt"
    bad.write_text("Only a headline here\r\n")
    with pytest.raises(DataError, match="only one sentence") as info:
        load_c50(root)
    assert info.value.path == str(bad)


def test_bad_max_per_author(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="max_per_author"):
        load_c50(_fake_c50(tmp_path / "c50"), max_per_author=0)


# ----------------------------------------------------------------------------------------------
# download_c50, offline: a file:// URL serving an archive shaped like the UCI one
# ----------------------------------------------------------------------------------------------


def _uci_like_archive(tmp_path: Path) -> Path:
    """An outer zip holding C50.zip, which holds C50train/ and C50test/ (the UCI packaging)."""
    src = _fake_c50(tmp_path / "src")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for f in sorted(src.rglob("*.txt")):
            zf.write(f, f.relative_to(src).as_posix())
    outer = tmp_path / "reuter+50+50.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("C50.zip", inner.getvalue())
    return outer


def test_download_unpacks_nested_zip_and_says_it_is_unverified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = _uci_like_archive(tmp_path)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = download_c50(tmp_path / "dest", url=archive.as_uri(), sha256=None, expect=(2, 2))
    out = capsys.readouterr().out
    assert digest in out and "no checksum recorded yet" in out
    assert check_c50_layout(root) == ["train", "test"]
    assert len(load_c50(root)) == 8
    assert not list((tmp_path / "dest").glob("*.part"))


def test_download_checks_the_checksum(tmp_path: Path) -> None:
    archive = _uci_like_archive(tmp_path)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = download_c50(tmp_path / "ok", url=archive.as_uri(), sha256=digest.upper(), expect=(2, 2))
    assert (root / "C50train").is_dir()
    with pytest.raises(DataError, match="checksum mismatch"):
        download_c50(tmp_path / "bad", url=archive.as_uri(), sha256="0" * 64)
    assert not (tmp_path / "bad" / "reuter_50_50.zip").exists()


def test_download_of_a_damaged_archive_names_it(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"<html>Service unavailable</html>")
    with pytest.raises(DataError, match="not a valid zip archive") as info:
        download_c50(tmp_path / "d", url=junk.as_uri())
    assert info.value.path == str(tmp_path / "d" / "reuter_50_50.zip")


def test_download_failure_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="could not download") as info:
        download_c50(tmp_path / "d", url=(tmp_path / "missing.zip").as_uri())
    assert paths.ENV_C50 in str(info.value)


def test_download_counts_authors_and_texts_when_no_checksum_is_recorded(tmp_path: Path) -> None:
    """With no SHA-256 recorded, the counts are the verification: an archive that unpacks to
    2 authors x 2 texts must not pass as Reuter_50_50 (50 x 50 per split)."""
    archive = _uci_like_archive(tmp_path)
    with pytest.raises(DataError, match="holds 2 author folders, Reuter_50_50 has 50"):
        download_c50(tmp_path / "d", url=archive.as_uri(), sha256=None)
    with pytest.raises(DataError, match=r"holds 2 \.txt files, every Reuter_50_50 author has 3"):
        download_c50(tmp_path / "e", url=archive.as_uri(), sha256=None, expect=(2, 3))


def test_missing_corpus_is_fetched_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Colab sets PERSRM_C50_FETCH=1 (a fresh runtime has no corpus); elsewhere a missing corpus
    stays an error instead of a download behind the learner's back."""
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    (home / "pyproject.toml").write_text("")
    monkeypatch.setenv(paths.ENV_HOME, str(home))
    monkeypatch.delenv(paths.ENV_C50, raising=False)
    monkeypatch.delenv(paths.ENV_C50_FETCH, raising=False)
    calls: list[Path] = []

    def fake_download(dest: Path) -> Path:
        calls.append(dest)
        return _fake_c50(dest)

    monkeypatch.setattr(corpus, "download_c50", fake_download)
    with pytest.raises(DataError, match="no local copy of Reuters C50"):
        corpus.default_c50_root()
    assert calls == []
    monkeypatch.setenv(paths.ENV_C50_FETCH, "1")
    root = corpus.default_c50_root()
    assert calls == [home / "data" / "reuters_c50"] and (root / "C50train").is_dir()
    assert corpus.default_c50_root() == root and len(calls) == 1  # found, not fetched again


def test_no_checksum_is_claimed() -> None:
    assert corpus.C50_SHA256 is None  # documented: not computed offline; see data/README.md
    assert corpus.C50_URL.startswith("https://archive.ics.uci.edu/")


# ----------------------------------------------------------------------------------------------
# A user's own JSONL of texts
# ----------------------------------------------------------------------------------------------

TEXT_A1 = "I write short notes. They are plain. Nobody reads them."
TEXT_A2 = "My second note is here. It is also plain."
TEXT_B1 = "Bob writes differently! Is that so? It is."
TEXT_B2 = "Bob again. Still excited!"
TEXT_A3 = "A third note, as plain. It ends here."


def _jsonl(path: Path, *objs: object) -> Path:
    path.write_text("\n".join(json.dumps(o) for o in objs) + "\n", encoding="utf-8")
    return path


def test_load_texts_jsonl_with_custom_fields(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "mine.jsonl",
        {"writer": "ann", "body": TEXT_A1, "text_id": "n1"},
        {"writer": "ann", "body": TEXT_A2},
        {"writer": "bob", "body": TEXT_B1},
        {"writer": "bob", "body": TEXT_B2, "extra": 1},
    )
    ex = load_texts_jsonl(path, author_field="writer", text_field="body")
    assert [(e.author_id, e.text_id) for e in ex] == [
        ("ann", "n1"),
        ("ann", "mine:2"),
        ("bob", "mine:3"),
        ("bob", "mine:4"),
    ]
    assert (
        ex[0].prompt == "I write short notes."
        and ex[0].output == "They are plain. Nobody reads them."
    )
    assert {e.source for e in ex} == {"jsonl"} and ex[3].meta == {"file": "mine.jsonl", "line": 4}


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        ({"author_id": "ann"}, "text", "missing field 'text'"),
        ({"text": TEXT_A1}, "author_id", "missing field 'author_id'"),
        ({"author_id": "ann", "text": 5}, "text", "must be a string"),
        ({"author_id": "ann", "text": "   "}, "text", "'text' is empty"),
        ({"author_id": "ann", "text": "Just one sentence."}, "text", "at least two sentences"),
    ],
)
def test_load_texts_jsonl_bad_line(tmp_path: Path, bad: dict, field: str, words: str) -> None:
    path = _jsonl(tmp_path / "t.jsonl", {"author_id": "ann", "text": TEXT_A1}, bad)
    with pytest.raises(DataError) as info:
        load_texts_jsonl(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 2, field)
    assert "t.jsonl, line 2" in str(err) and words in str(err) and "Fix:" in str(err)


def test_load_texts_jsonl_author_with_single_text(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "t.jsonl",
        {"author_id": "ann", "text": TEXT_A1},
        {"author_id": "bob", "text": TEXT_B1},
        {"author_id": "ann", "text": TEXT_A2},
    )
    with pytest.raises(DataError, match="'bob' has only 1 text; at least 2") as info:
        load_texts_jsonl(path)
    assert info.value.line == 2


def test_load_texts_jsonl_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"author_id": "ann", "text": "caf\xe9. Ok."}\n')
    with pytest.raises(DataError, match="not valid UTF-8") as info:
        load_texts_jsonl(path)
    assert info.value.line == 1


# ----------------------------------------------------------------------------------------------
# Pasted texts ("bring your own writing")
# ----------------------------------------------------------------------------------------------


def test_exemplars_from_texts() -> None:
    ex = exemplars_from_texts("me", [TEXT_A1, "  " + TEXT_A2 + "\n"])
    assert [(e.author_id, e.text_id, e.source) for e in ex] == [
        ("me", "me/001", "own"),
        ("me", "me/002", "own"),
    ]
    assert ex[1].prompt == "My second note is here." and ex[1].output == "It is also plain."


def test_a_single_text_is_not_enough() -> None:
    with pytest.raises(DataError) as info:
        exemplars_from_texts("me", [TEXT_A1])
    msg = str(info.value)
    assert "at least 2" in msg and "exemplar" in msg and "test it on" in msg


@pytest.mark.parametrize(
    ("texts", "words", "field"),
    [
        ([TEXT_A1, ""], "empty", "texts[1]"),
        ([TEXT_A1, "One sentence only."], "at least two sentences", "texts[1]"),
        ([TEXT_A1, TEXT_A2, TEXT_A1 + " "], "repeats text 1", "texts[2]"),
    ],
)
def test_bad_pasted_texts_name_the_text(texts: list[str], words: str, field: str) -> None:
    with pytest.raises(DataError, match=re.escape(words)) as info:
        exemplars_from_texts("me", texts)
    assert info.value.field == field


def test_empty_author_id() -> None:
    with pytest.raises(DataError, match="author id is empty"):
        exemplars_from_texts(" ", [TEXT_A1, TEXT_A2])


def test_save_own_texts_round_trip_and_replace(tmp_path: Path) -> None:
    path = tmp_path / "own" / "texts.jsonl"
    save_own_texts(path, "ann", [TEXT_A1, TEXT_A2])
    save_own_texts(path, "bob", [TEXT_B1, TEXT_B2])
    save_own_texts(path, "ann", [TEXT_A2, TEXT_A1, TEXT_A3])  # replaces ann, keeps bob
    recs = read_jsonl(path, TextRecord)
    assert [(r.author_id, r.text_id) for r in recs] == [
        ("bob", "bob/001"),
        ("bob", "bob/002"),
        ("ann", "ann/001"),
        ("ann", "ann/002"),
        ("ann", "ann/003"),
    ]
    ex = load_own_texts(path)
    assert len(ex) == 5 and {e.source for e in ex} == {"own"}
    assert load_texts_jsonl(path)[2].prompt == "My second note is here."


def test_save_own_texts_refuses_bad_input_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "texts.jsonl"
    with pytest.raises(DataError, match="at least 2"):
        save_own_texts(path, "ann", [TEXT_A1])
    assert not path.exists()


# ----------------------------------------------------------------------------------------------
# Seed data
# ----------------------------------------------------------------------------------------------


def test_seed_authors_shape() -> None:
    ex = load_seed()
    assert len(ex) == 48 and {e.source for e in ex} == {"seed"}
    counts = Counter(e.author_id for e in ex)
    assert counts == {
        a: 8
        for a in (
            "wire_reporter",
            "florid_essayist",
            "chatty_blogger",
            "tech_writer",
            "cautious_academic",
            "sports_commentator",
        )
    }
    assert len({e.text_id for e in ex}) == 48


def test_seed_texts_follow_the_documented_rules() -> None:
    recs = read_jsonl(corpus.seed_path(), TextRecord)
    for r in recs:
        n_words = len(r.text.split())
        assert 60 <= n_words <= 140, (r.text_id, n_words)
        assert len(sentences(r.text)) >= 3, r.text_id
        assert r.text_id.startswith(r.author_id + "-")
    raw = corpus.seed_path().read_text(encoding="utf-8")
    assert raw.count("\n") == 48 and raw.endswith("\n")


def test_seed_bad_line_is_reported(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "seed.jsonl",
        {"author_id": "a", "text_id": "a-1", "text": TEXT_A1},
        {"author_id": "a", "text_id": "a-2", "text": "One sentence."},
    )
    with pytest.raises(DataError, match="only one sentence") as info:
        load_seed(path)
    assert (info.value.line, info.value.field) == (2, "text")
