"""The user-swap test's items: two real texts, each author's exemplars, labels that flip."""

from __future__ import annotations

from collections import defaultdict

import pytest

from persrm_utils.data.user_swap import user_swap_pairs
from persrm_utils.errors import DataError
from persrm_utils.judge.format import build_messages, label, responses
from persrm_utils.records import Exemplar


def corpus(n_authors: int = 4, n_texts: int = 5, split: str = "test") -> list[Exemplar]:
    return [
        Exemplar(
            author_id=f"au{a}",
            text_id=f"au{a}/{t}",
            prompt=f"Opening {a}.{t}.",
            output=f"Text {t} written by author {a}, in the voice of author {a}.",
            source="seed",
            meta={"split": split},
        )
        for a in range(n_authors)
        for t in range(n_texts)
    ]


def groups(pairs):
    out = defaultdict(dict)
    for p in pairs:
        out[p.meta["swap_group"]][p.meta["user"]] = p
    return out


@pytest.mark.parametrize("k", [1, 2, 3])
def test_no_judged_text_is_ever_an_exemplar_and_both_users_have_their_own(k):
    exemplars = corpus()
    by_id = {e.text_id: e for e in exemplars}
    pairs = user_swap_pairs(exemplars, "test", k=k, seed=3)
    items = groups(pairs)
    assert len(items) == 20 and len(pairs) == 40  # one item per text, two versions each
    for item in items.values():
        a, b = item["a"], item["b"]
        judged = {a.text_id, b.text_id}
        assert a.author_id != b.author_id
        for version in (a, b):
            assert len(version.exemplar_ids) == k
            assert not judged & set(version.exemplar_ids)
            assert {by_id[i].author_id for i in version.exemplar_ids} == {version.author_id}
            assert version.prompt == "" and version.negative_type == "user_swap"
            # the prompt shows neither judged text among the exemplars (the format checks too)
            text = build_messages(version, by_id)[1]["content"]
            assert "[Prompt]" not in text


def test_labels_flip_between_the_two_users_and_the_layout_does_not():
    items = groups(user_swap_pairs(corpus(), "test", seed=0))
    firsts = []
    for item in items.values():
        a, b = item["a"], item["b"]
        assert (a.chosen, a.rejected) == (b.rejected, b.chosen)
        for swap in (False, True):
            assert responses(a, swap) == responses(b, swap)  # the same two texts, same places
            assert label(a, swap) != label(b, swap)  # but the other one is right
        firsts.append(a.chosen_position)
    assert abs(firsts.count("A") - firsts.count("B")) <= 1  # balanced positions


def test_deterministic_capped_and_only_from_the_split():
    exemplars = corpus() + corpus(split="train")[:3]
    one = user_swap_pairs(exemplars, "test", n_pairs=7, seed=1)
    assert one == user_swap_pairs(list(reversed(exemplars)), "test", n_pairs=7, seed=1)
    assert len(groups(one)) == 7
    assert user_swap_pairs(exemplars, "test", n_pairs=7, seed=2) != one


def test_refuses_a_split_with_fewer_than_two_usable_authors():
    with pytest.raises(DataError, match="two authors"):
        user_swap_pairs(corpus(n_authors=1), "test")
    with pytest.raises(DataError, match="two authors"):
        user_swap_pairs(corpus(n_texts=2), "test", k=2)


def test_items_pooled_from_several_splits_get_ids():
    """With one test author (smoke) the builder pools test and validation authors; a tuple of
    splits once reached the id hash and failed with "expected str instance, tuple found"."""
    exemplars = [
        Exemplar(author_id=a, text_id=f"{a}/{t}", prompt="An opening.", output=f"{a} text {t}.",
                 source="seed", meta={"split": split})
        for a, split in (("x", "test"), ("y", "val"), ("z", "val"))
        for t in range(3)
    ]  # fmt: skip
    pairs = user_swap_pairs(exemplars, ("test", "val"), None, 1, seed=0)
    assert pairs and len({p.pair_id for p in pairs}) == len(pairs)
    assert {p.split for p in pairs} <= {"test", "val"}
