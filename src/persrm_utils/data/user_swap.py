"""The user-swap test: does the judge read the person, or only the texts?

Two real texts, one by author *a* and one by author *b*, are shown to the judge twice: once with
*a*'s exemplars (the right answer is *a*'s text) and once with *b*'s (the right answer is *b*'s
text). The two texts sit at the same positions in both versions; only the exemplars change. A
judge that ignores the exemplars gives the same letter in both versions, so it is right in exactly
one of them: it scores exactly 0.5 however well it judges the texts, and it is never right under
both users. A judge that reads the person flips its choice.

No opening is shown (``prompt`` is empty): an opening belongs to one of the two texts and would
give the answer away by coherence. The question becomes "which of these two texts did the writer
of the exemplars write?" (:data:`persrm_utils.judge.format.NO_PROMPT_QUESTION`). The judged texts
are the authors' real continuations, cut the same way as every other pair's, so nothing but the
writing itself tells them apart; neither is ever shown as an exemplar in its own item.

The same items, from training authors, are training data too: with no opening and the same two
texts under both labels, the texts alone carry no signal, and the only way to lower the loss is
to read the exemplar.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from persrm_utils.errors import DataError
from persrm_utils.records import USER_SWAP, Exemplar, Pair, SplitName, stable_id


def writers_of(
    exemplars: Sequence[Exemplar], splits: tuple[SplitName, ...], k: int, what: str
) -> dict[str, list[Exemplar]]:
    """The authors of ``splits`` with at least ``k + 1`` texts (one judged, ``k`` shown), each
    with their texts sorted by id; fewer than two such authors is an error naming ``what``."""
    by_author: dict[str, list[Exemplar]] = defaultdict(list)
    for ex in sorted(exemplars, key=lambda e: (e.author_id, e.text_id)):
        if ex.meta.get("split") in splits:
            by_author[ex.author_id].append(ex)
    usable = {a: exs for a, exs in by_author.items() if len(exs) >= k + 1}
    if len(usable) < 2:
        raise DataError(
            f"{what} needs two authors of split {'+'.join(splits)} with at least {k + 1} "
            f"texts each; found {len(usable)}",
            "use more texts per author or more authors, or a smaller k.",
        )
    return usable


def user_swap_pairs(
    exemplars: Sequence[Exemplar],
    split: SplitName | Sequence[SplitName] = "test",
    n_pairs: int | None = None,
    k: int = 1,
    seed: int = 0,
) -> list[Pair]:
    """Two :class:`Pair` records (users *a* and *b*) per item, items in a seeded order.

    Every text of ``split`` (``meta["split"]``, as notebook 01 writes it; several splits pool
    their authors, e.g. ``("test", "val")``: authors never trained on) whose author has at
    least ``k`` other texts is author *a*'s text of one item, paired with a text of another
    author of the split drawn with ``random.Random(seed)``; ``n_pairs`` caps the items (None:
    one per such text). Each version shows ``k`` of its user's *other* texts as exemplars, never
    either judged text. The real text of user *a* is shown as A in half of the items (B in the
    other half), and version *b* keeps the layout, so its label is the other letter.

    Both versions share ``meta["swap_group"]`` (the item) and name their user in
    ``meta["user"]`` ("a" or "b"); ``negative_source`` is ``real:<the other text's id>``.
    """
    if k < 1:
        raise DataError(f"k={k}", "show at least one exemplar per user (k >= 1).")
    splits = (split,) if isinstance(split, str) else tuple(split)
    usable = writers_of(exemplars, splits, k, "the user-swap test")
    rng = random.Random(f"user_swap:{seed}:{'+'.join(splits)}")
    anchors = [ex for exs in usable.values() for ex in exs]
    rng.shuffle(anchors)
    if n_pairs is not None:
        anchors = anchors[:n_pairs]
    positions = (["A", "B"] * (len(anchors) // 2 + 1))[: len(anchors)]
    rng.shuffle(positions)
    authors = sorted(usable)
    out: list[Pair] = []
    for text_a, pos_a in zip(anchors, positions, strict=True):
        author_b = rng.choice([a for a in authors if a != text_a.author_id])
        text_b = rng.choice(usable[author_b])
        group = stable_id("+".join(splits), "user_swap", text_a.text_id, text_b.text_id)
        pos_b = "B" if pos_a == "A" else "A"
        for user, mine, other, pos in (("a", text_a, text_b, pos_a), ("b", text_b, text_a, pos_b)):
            pool = [
                e for e in usable[mine.author_id] if e.text_id not in (mine.text_id, other.text_id)
            ]
            shown = rng.sample(pool, k)
            out.append(
                Pair(
                    pair_id=stable_id(group, user),
                    split=str(mine.meta["split"]),  # type: ignore[arg-type]
                    author_id=mine.author_id,
                    text_id=mine.text_id,
                    prompt="",
                    chosen=mine.output,
                    rejected=other.output,
                    negative_type=USER_SWAP,
                    exemplar_ids=[e.text_id for e in shown],
                    chosen_position=pos,  # type: ignore[arg-type]
                    negative_source=f"real:{other.text_id}",
                    seen_author=mine.meta["split"] in ("train", "seen_test"),
                    meta={"k": k, "swap_group": group, "user": user},
                )
            )
    return out


def unseen_user_swap_pairs(
    exemplars: Sequence[Exemplar], n_pairs: int | None, k: int, seed: int
) -> tuple[list[Pair], tuple[SplitName, ...]]:
    """User-swap items of the unseen test authors, and the splits they were drawn from.

    With a single test author (the smoke profile) the validation authors join them: they are
    never trained on either. Raises :class:`DataError` when even both splits have too few.
    """
    try:
        return user_swap_pairs(exemplars, "test", n_pairs, k, seed), ("test",)
    except DataError:
        return user_swap_pairs(exemplars, ("test", "val"), n_pairs, k, seed), ("test", "val")
