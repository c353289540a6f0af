"""Stage 01's data work: the learner's own texts against the corpus, and where the corpus is read
from when both ``corpus_path`` and ``$PERSRM_C50_DIR`` are set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persrm_utils import paths
from persrm_utils.data.corpus import exemplars_from_texts, load_own_texts, load_seed
from persrm_utils.data.exemplars import (
    assign_splits,
    corpus_location,
    corpus_record,
    load_corpus,
    select,
)
from persrm_utils.errors import DataError
from persrm_utils.profiles import get_profile

MINE = [
    "I run in the dark months. The first week was miserable.",
    "Our kitchen table is where everything happens. I like it that way.",
    "The train was late again, so I read. Forty minutes is long.",
]


def test_own_texts_under_a_corpus_authors_id_are_refused_naming_the_id_and_file(tmp_path):
    """Your texts join the unseen test authors; under a corpus author's id they would merge with
    that author, whose texts may be in training: a 'new user' the model has already read."""
    profile = get_profile("smoke")
    corpus = select(load_seed(), profile)
    taken = corpus[0].author_id
    with pytest.raises(DataError) as err:
        assign_splits(corpus, profile, own=exemplars_from_texts(taken, MINE))
    msg = str(err.value)
    assert f"field 'author_id': your author id '{taken}' is also an author of the corpus" in msg
    assert "Fix: choose another author id for your texts (e.g. 'me')" in msg
    path = tmp_path / "own.jsonl"
    path.write_text("".join(
        json.dumps({"author_id": taken, "text_id": f"me/{i}", "text": t}) + "\n"
        for i, t in enumerate(MINE, 1)
    ))  # fmt: skip
    with pytest.raises(DataError) as err:
        assign_splits(corpus, profile, own=load_own_texts(path))
    assert f"{path.name}, line 1, field 'author_id': your author id '{taken}'" in str(err.value)
    # under their own id the same texts join the test split, and every corpus text is kept
    labelled = assign_splits(corpus, profile, own=exemplars_from_texts("me", MINE))
    assert [e.meta["split"] for e in labelled if e.author_id == "me"] == ["test"] * 3
    assert len(labelled) == len(corpus) + 3


def _fake_c50(root: Path, authors: tuple[str, ...]) -> Path:
    article = "Acme Corp said on Monday profits rose.\nThe company sells widgets. Shares rose.\n"
    for split in ("C50train", "C50test"):
        for a in authors:
            folder = root / split / a
            folder.mkdir(parents=True)
            for i in range(2):
                (folder / f"{100 + i}newsML.txt").write_text(f"{article}Note {a} {i}.\n")
    return root


def test_corpus_path_wins_over_the_environment_variable(tmp_path, monkeypatch):
    """The profile's corpus_path is this run's setting (the manifest records it); the variable
    is the machine's default. A wrong variable does not matter while corpus_path is set."""
    mine = _fake_c50(tmp_path / "mine", ("Ann", "Bob"))
    other = _fake_c50(tmp_path / "other", ("Cat", "Dan"))
    monkeypatch.setenv(paths.ENV_C50, str(other))
    profile = get_profile("cpu", corpus_path=str(mine))
    assert corpus_location(profile) == mine
    assert {e.author_id for e in load_corpus(profile)} == {"Ann", "Bob"}
    assert corpus_record(profile)["path"] == str(mine.resolve())
    monkeypatch.setenv(paths.ENV_C50, str(tmp_path / "nowhere"))
    assert {e.author_id for e in load_corpus(profile)} == {"Ann", "Bob"}
    # without corpus_path the variable is used, and a wrong one is an error
    with pytest.raises(DataError, match="PERSRM_C50_DIR points here"):
        load_corpus(get_profile("cpu"))
    monkeypatch.setenv(paths.ENV_C50, str(other))
    assert {e.author_id for e in load_corpus(get_profile("cpu"))} == {"Cat", "Dan"}
