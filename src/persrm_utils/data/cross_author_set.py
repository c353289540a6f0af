"""A larger set of unseen-author cross_author pairs, each judged with and without its opening.

The test split deals the four negative types, so a run's unseen ``cross_author`` pairs are few
(34 on ``cpu-long``): too few for an interval that can tell a judge from the character n-gram
baseline. And on those pairs the opening gives much of the answer away: the negative is another
author's continuation of *another* opening, so a judge can pick the text that follows the
opening shown without reading the person (run ``cpu-long-d``'s final judge scored 0.838 there
with no exemplar at all).

This set asks both questions on the same texts. Every text of an unseen author becomes one
item: that text's real continuation against another unseen author's continuation, the one
whose opening shares the most content words with it
(:func:`~persrm_utils.data.pairs.cross_author_negative`, as the series' pairs draw it). Each
item is a pair in two **forms**:

* ``"opening"``: the opening shown, as every pair of the series shows it;
* ``"no opening"``: no opening (``prompt`` empty), so coherence cannot decide; what is left
  is the writing itself, and the exemplar is what says whose writing is wanted.

Both forms show the same exemplars (``k`` of the author's *other* texts) and the real text at
the same position, so the two forms' difference is the opening alone. Judged once with the
exemplars and once with none (k = 0), the exemplar effect of each form says how much the
person counts when the opening can and cannot decide. Unlike the user-swap test
(:mod:`persrm_utils.data.user_swap`), each item is judged for one user only, so a judge that
ignores the exemplars is not held at exactly 0.5 by construction: its k = 0 accuracy on the
no-opening form is whatever its taste in texts happens to give on these pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

from persrm_utils.data.pairs import cross_author_negative
from persrm_utils.data.user_swap import draw_anchors, on_unseen_authors
from persrm_utils.records import Exemplar, Pair, SplitName, stable_id

#: The two forms of every item, in the order the tables list them.
FORMS: tuple[str, str] = ("opening", "no opening")


def cross_author_set(
    exemplars: Sequence[Exemplar],
    split: SplitName | Sequence[SplitName] = "test",
    n_items: int | None = None,
    k: int = 1,
    seed: int = 0,
) -> list[Pair]:
    """Two :class:`Pair` records (``meta["form"]``: ``"opening"``, ``"no opening"``) per item.

    Every text of ``split`` (several splits pool their authors) whose author has at least ``k``
    other texts anchors one item, in a seeded order; ``n_items`` caps the items (None: all).
    The negative is drawn from the *other authors of the same splits* only, never a training
    author, so both texts come from writers the judge never trained on. The real text is A in
    half of the items; both forms share ``meta["item"]``, the exemplars and the layout.
    """
    draw = draw_anchors(exemplars, split, n_items, k, seed, "cross_author_set",
                        "the cross-author set", "item")  # fmt: skip
    splits, usable, rng = draw.splits, draw.writers, draw.rng
    pool = [ex for exs in usable.values() for ex in exs]
    out: list[Pair] = []
    for anchor, pos in zip(draw.anchors, draw.positions, strict=True):
        other = cross_author_negative(anchor, pool)
        others = [e for e in usable[anchor.author_id] if e.text_id != anchor.text_id]
        shown = [e.text_id for e in rng.sample(others, k)]
        item = stable_id("+".join(splits), "cross_author_set", anchor.text_id, other.text_id)
        for form in FORMS:
            out.append(
                Pair(
                    pair_id=stable_id(item, form),
                    split=str(anchor.meta["split"]),  # type: ignore[arg-type]
                    author_id=anchor.author_id,
                    text_id=anchor.text_id,
                    prompt=anchor.prompt if form == "opening" else "",
                    chosen=anchor.output,
                    rejected=other.output,
                    negative_type="cross_author",
                    exemplar_ids=shown,
                    chosen_position=pos,  # type: ignore[arg-type]
                    negative_source=f"real:{other.text_id}",
                    seen_author=False,
                    meta={"k": k, "form": form, "item": item},
                )
            )
    return out


def unseen_cross_author_set(
    exemplars: Sequence[Exemplar], n_items: int | None, k: int, seed: int
) -> tuple[list[Pair], tuple[SplitName, ...]]:
    """The set over the unseen test authors, and the splits it was drawn from
    (:func:`~persrm_utils.data.user_swap.on_unseen_authors`, as for the user-swap test)."""
    return on_unseen_authors(lambda splits: cross_author_set(exemplars, splits, n_items, k, seed))
