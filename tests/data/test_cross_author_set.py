"""The cross-author set: more unseen cross_author pairs, each with and without its opening."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from persrm_utils.data.cross_author_set import FORMS, cross_author_set, unseen_cross_author_set
from persrm_utils.errors import DataError
from persrm_utils.judge.format import NO_PROMPT_QUESTION, build_messages
from persrm_utils.records import Exemplar


def corpus(splits: dict[str, int], n_texts: int = 5) -> list[Exemplar]:
    """``splits``: how many authors each split has; author ids are unique across splits."""
    out, a = [], 0
    for split, n_authors in splits.items():
        for _ in range(n_authors):
            out += [
                Exemplar(author_id=f"au{a}", text_id=f"au{a}/{t}", prompt=f"Opening {a}.{t} ships.",
                         output=f"Text {t} by author {a}.", source="seed", meta={"split": split})
                for t in range(n_texts)
            ]  # fmt: skip
            a += 1
    return out


def items(pairs):
    out = defaultdict(dict)
    for p in pairs:
        out[p.meta["item"]][p.meta["form"]] = p
    return out


@pytest.mark.parametrize("k", [1, 3])
def test_both_texts_are_unseen_authors_and_neither_is_ever_an_exemplar(k):
    """A test text shown as an exemplar, or a negative from a training author the judge has
    read, would let a judge pass without reading the unseen person."""
    exemplars = corpus({"train": 3, "test": 4})
    by_id = {e.text_id: e for e in exemplars}
    pairs = cross_author_set(exemplars, "test", k=k, seed=1)
    assert len(pairs) == 2 * 20  # every test text anchors one item, in two forms
    for p in pairs:
        negative = by_id[p.negative_source.removeprefix("real:")]
        assert negative.meta["split"] == "test" and negative.author_id != p.author_id
        assert p.rejected == negative.output and p.chosen == by_id[p.text_id].output
        assert len(p.exemplar_ids) == k and p.text_id not in p.exemplar_ids
        assert {by_id[i].author_id for i in p.exemplar_ids} == {p.author_id}
        assert p.negative_type == "cross_author" and not p.seen_author


def test_the_two_forms_differ_by_the_opening_alone():
    by_id = {e.text_id: e for e in corpus({"test": 3})}
    pairs = cross_author_set(list(by_id.values()), "test", seed=0)
    for item in items(pairs).values():
        shown, hidden = item["opening"], item["no opening"]
        assert shown.prompt == by_id[shown.text_id].prompt and hidden.prompt == ""
        for field in ("chosen", "rejected", "exemplar_ids", "chosen_position", "author_id"):
            assert getattr(shown, field) == getattr(hidden, field)
        assert shown.pair_id != hidden.pair_id
        with_opening = build_messages(shown, by_id)[1]["content"]
        without = build_messages(hidden, by_id)[1]["content"]
        assert "[Prompt]" in with_opening
        assert "[Prompt]" not in without and without.endswith(NO_PROMPT_QUESTION)
    assert set(Counter(p.meta["form"] for p in pairs).values()) == {15}
    assert tuple(dict.fromkeys(p.meta["form"] for p in pairs)) == FORMS


def test_positions_are_balanced_capped_and_the_same_for_a_seed():
    exemplars = corpus({"test": 4})
    pairs = cross_author_set(exemplars, "test", n_items=10, seed=5)
    assert len(items(pairs)) == 10
    assert Counter(p.chosen_position for p in pairs) == {"A": 10, "B": 10}
    again = cross_author_set(exemplars, "test", n_items=10, seed=5)
    assert [p.model_dump() for p in pairs] == [p.model_dump() for p in again]
    other = cross_author_set(exemplars, "test", n_items=10, seed=6)
    assert [p.pair_id for p in other] != [p.pair_id for p in pairs]


def test_too_few_unseen_authors_is_an_error_that_names_the_fix_and_val_joins_test():
    exemplars = corpus({"train": 3, "val": 1, "test": 1})
    with pytest.raises(DataError, match="two authors of split test with at least 2 texts"):
        cross_author_set(exemplars, "test")
    with pytest.raises(DataError, match="more texts per author"):
        cross_author_set(corpus({"test": 2}, n_texts=1), "test")
    pairs, splits = unseen_cross_author_set(exemplars, None, 1, 0)
    assert splits == ("test", "val") and {p.split for p in pairs} == {"test", "val"}
