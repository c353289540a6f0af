"""Author splits: unseen test authors, seen-author hold-out, determinism, clear size errors."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from persrm_utils.data.corpus import load_seed
from persrm_utils.data.splits import seen_author_split, split_by_author
from persrm_utils.errors import DataError
from persrm_utils.records import Exemplar


def _corpus(n_authors: int = 10, n_texts: int = 5) -> list[Exemplar]:
    return [
        Exemplar(
            author_id=f"author{a:02d}",
            text_id=f"author{a:02d}/{t}",
            prompt="An opening.",
            output=f"Text {t} by {a}.",
            source="own",
        )
        for a in range(n_authors)
        for t in range(n_texts)
    ]


def _authors(exemplars: list[Exemplar]) -> set[str]:
    return {e.author_id for e in exemplars}


def test_unseen_authors_are_disjoint_and_complete() -> None:
    data = _corpus()
    split = split_by_author(data, n_val_authors=2, n_test_authors=3, seed=7)
    assert list(split) == ["train", "val", "test"]
    train, val, test = (_authors(split[k]) for k in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (5, 2, 3)
    assert not (train & val or train & test or val & test)
    assert sorted(e.text_id for part in split.values() for e in part) == sorted(
        e.text_id for e in data
    )
    assert set(Counter(e.author_id for e in split["test"]).values()) == {5}


def test_split_is_deterministic_and_independent_of_input_order() -> None:
    data = _corpus()
    shuffled = data[:]
    random.Random(1).shuffle(shuffled)
    a = split_by_author(data, 2, 2, seed=3)
    b = split_by_author(shuffled, 2, 2, seed=3)
    assert a == b
    seeds = {tuple(sorted(_authors(split_by_author(data, 2, 2, seed=s)["test"]))) for s in range(6)}
    assert len(seeds) > 1  # the seed matters


def test_zero_validation_authors() -> None:
    split = split_by_author(_corpus(4), n_val_authors=0, n_test_authors=1, seed=0)
    assert split["val"] == [] and len(_authors(split["train"])) == 3


@pytest.mark.parametrize(("n_val", "n_test"), [(3, 3), (6, 0), (0, 6), (5, 2)])
def test_too_few_authors_is_explained(n_val: int, n_test: int) -> None:
    with pytest.raises(DataError) as info:
        split_by_author(_corpus(6), n_val, n_test, seed=0)
    msg = str(info.value)
    assert "too few authors: 6" in msg and "at most 5" in msg


def test_negative_sizes_are_refused() -> None:
    with pytest.raises(DataError, match="negative"):
        split_by_author(_corpus(6), -1, 1, seed=0)


def test_seed_authors_split() -> None:
    split = split_by_author(load_seed(), n_val_authors=1, n_test_authors=1, seed=0)
    assert [len(_authors(split[k])) for k in ("train", "val", "test")] == [4, 1, 1]
    assert len(split["test"]) == 8


def test_seen_author_split_holds_out_part_of_every_author() -> None:
    data = _corpus(n_authors=4, n_texts=10)
    split = seen_author_split(data, frac=0.2, seed=1)
    assert _authors(split["train"]) == _authors(split["test"]) == _authors(data)
    assert Counter(e.author_id for e in split["test"]) == {f"author{a:02d}": 2 for a in range(4)}
    assert len(split["train"]) == 32
    assert not {e.text_id for e in split["train"]} & {e.text_id for e in split["test"]}


def test_seen_author_split_keeps_at_least_one_text_each_side() -> None:
    data = _corpus(n_authors=2, n_texts=2)
    for frac in (0.01, 0.99):
        split = seen_author_split(data, frac=frac, seed=0)
        assert Counter(e.author_id for e in split["train"]) == {"author00": 1, "author01": 1}
        assert Counter(e.author_id for e in split["test"]) == {"author00": 1, "author01": 1}


def test_seen_author_split_is_deterministic_and_stable_per_author() -> None:
    data = _corpus(n_authors=3, n_texts=10)
    a = seen_author_split(data, 0.3, seed=5)
    b = seen_author_split(list(reversed(data)), 0.3, seed=5)
    assert a == b
    more = seen_author_split(data + _corpus(n_authors=4, n_texts=10)[30:], 0.3, seed=5)
    assert [e for e in more["test"] if e.author_id != "author03"] == a["test"]
    other = [seen_author_split(data, 0.3, seed=s)["test"] for s in range(4)]
    assert any(o != a["test"] for o in other)


def test_seen_author_split_needs_two_texts_per_author() -> None:
    data = _corpus(n_authors=2, n_texts=3) + _corpus(n_authors=3, n_texts=1)[2:]
    with pytest.raises(DataError, match="'author02' has only 1 text") as info:
        seen_author_split(data, 0.5, seed=0)
    assert info.value.field == "author_id"


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, 1.5])
def test_seen_author_split_bad_fraction(frac: float) -> None:
    with pytest.raises(DataError, match="between 0 and 1"):
        seen_author_split(_corpus(2), frac, seed=0)
