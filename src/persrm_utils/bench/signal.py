"""How much of the person is in the texts? A character n-gram reader across text length and k.

A judge can only read what the texts carry. Before paying for a longer run, measure how well a
model-free reader, the character n-gram baseline (:func:`~persrm_utils.evaluate.baselines.
stylometric_baseline`), separates two authors on the user-swap test at each text length and
number of exemplars: that is a floor for what a judge that reads the person should reach, and
it costs seconds, not the hour of a probe. ``scripts/signal_by_length.py`` prints the grid.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from persrm_utils.data.exemplars import collect
from persrm_utils.data.user_swap import unseen_user_swap_pairs
from persrm_utils.evaluate.baselines import stylometric_baseline, visible_cue_baseline
from persrm_utils.evaluate.metrics import predictions_frame, user_swap_summary
from persrm_utils.profiles import Profile


def signal_grid(
    profile: Profile,
    lengths: Iterable[int],
    ks: Iterable[int],
    items: int | None = 100,
) -> list[dict[str, Any]]:
    """One row per (words, k): the user-swap accuracy of character n-grams and of the visible
    cues on ``items`` items of ``profile``'s unseen authors (drawn as notebook 05 draws them),
    with the texts and exemplars cut to ``words`` words (the profile's ``max_output_words``)
    and ``k`` exemplars per user.

    The authors, texts and items are the profile's (its seed and split sizes): the recipe
    probes set ``n_val_authors=0``, which changes which authors are unseen, so pass that
    override to read the grid beside a probe's figures.
    """
    rows = []
    for words in lengths:
        exemplars = collect(profile.override(max_output_words=words))
        by_id = {e.text_id: e for e in exemplars}
        for k in ks:
            swap, _ = unseen_user_swap_pairs(exemplars, items, k, profile.seed)
            row: dict[str, Any] = {"words": words, "k": k}
            for name, judge in (("char n-grams", stylometric_baseline),
                                ("visible cues", visible_cue_baseline)):  # fmt: skip
                s = user_swap_summary(predictions_frame(judge(swap, by_id), swap, name), swap)
                row[name] = {key: round(float(s[key]), 3) for key in
                             ("accuracy", "ci_low", "ci_high", "both_right")}  # fmt: skip
                row["n_items"] = int(s["n_pairs"])  # user-swap items
            rows.append(row)
    return rows
