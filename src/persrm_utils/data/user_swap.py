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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from persrm_utils.errors import DataError
from persrm_utils.records import USER_SWAP, Exemplar, Pair, SplitName, stable_id


@dataclass
class AnchorDraw:
    """The seeded draw both real-text sets start from (:func:`draw_anchors`)."""

    splits: tuple[SplitName, ...]
    writers: dict[str, list[Exemplar]]  # authors with k + 1 texts or more, texts sorted by id
    anchors: list[Exemplar]  # one judged text per item, in the seeded order, capped
    positions: list[str]  # where each anchor's real text is shown: A in half, B in half
    rng: random.Random  # the draw's generator, for the rest of the set's choices


def draw_anchors(
    exemplars: Sequence[Exemplar],
    split: SplitName | Sequence[SplitName],
    n_items: int | None,
    k: int,
    seed: int,
    name: str,
    what: str,
    unit: str,
) -> AnchorDraw:
    """Every text of ``split`` whose author has at least ``k`` other texts, shuffled with a
    generator seeded by ``name``, ``seed`` and the splits, capped at ``n_items``, with balanced
    A/B positions. The user-swap test and the cross-author set both start here, so their items
    are drawn the same way; fewer than two such authors is an error naming ``what``."""
    if k < 1:
        raise DataError(f"k={k}", f"show at least one exemplar per {unit} (k >= 1).")
    splits = (split,) if isinstance(split, str) else tuple(split)
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
    rng = random.Random(f"{name}:{seed}:{'+'.join(splits)}")
    anchors = [ex for exs in usable.values() for ex in exs]
    rng.shuffle(anchors)
    if n_items is not None:
        anchors = anchors[:n_items]
    positions = (["A", "B"] * (len(anchors) // 2 + 1))[: len(anchors)]
    rng.shuffle(positions)
    return AnchorDraw(splits, usable, anchors, positions, rng)


def on_unseen_authors(
    build: Callable[[tuple[SplitName, ...]], list[Pair]],
) -> tuple[list[Pair], tuple[SplitName, ...]]:
    """``build`` over the unseen test authors, and the splits it drew from.

    With a single test author (the smoke profile) the validation authors join them: they are
    never trained on either. Raises :class:`DataError` when even both splits have too few.
    """
    try:
        return build(("test",)), ("test",)
    except DataError:
        return build(("test", "val")), ("test", "val")


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
    draw = draw_anchors(exemplars, split, n_pairs, k, seed, "user_swap", "the user-swap test",
                        "user")  # fmt: skip
    splits, usable, anchors, positions, rng = (
        draw.splits, draw.writers, draw.anchors, draw.positions, draw.rng
    )  # fmt: skip
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
    """User-swap items of the unseen test authors, and the splits they were drawn from
    (:func:`on_unseen_authors`: the validation authors join a single test author)."""
    return on_unseen_authors(lambda splits: user_swap_pairs(exemplars, splits, n_pairs, k, seed))
