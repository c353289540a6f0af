"""How much of the person is in the texts? A character n-gram reader across text length and k.

A judge can only read what the texts carry. Before paying for a longer run, measure how well a
model-free reader, the character n-gram baseline (:func:`~persrm_utils.evaluate.baselines.
stylometric_baseline`), separates two authors on the user-swap test at each text length and
number of exemplars: that is a floor for what a judge that reads the person should reach, and
it costs seconds, not the hour of a probe. Notebook 01 plots it for the run's profile;
``scripts/signal_by_length.py`` prints it.

Given a language model, the grid also asks whether *the model* carries the person before any
training: :func:`~persrm_utils.evaluate.likelihood.likelihood_baseline` (how much the exemplars
raise each text's likelihood) on the same items. That costs forward passes (minutes on CPU), so
it is only computed when asked (``scripts/signal_by_length.py --model``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from persrm_utils.data.exemplars import assign_splits, load_corpus, select
from persrm_utils.data.user_swap import unseen_user_swap_pairs
from persrm_utils.evaluate.baselines import stylometric_baseline, visible_cue_baseline
from persrm_utils.evaluate.likelihood import LIKELIHOOD_NAME, likelihood_baseline
from persrm_utils.evaluate.metrics import predictions_frame, user_swap_summary
from persrm_utils.profiles import Profile
from persrm_utils.records import Exemplar


def signal_grid(
    profile: Profile,
    lengths: Iterable[int],
    ks: Iterable[int],
    items: int | None = 100,
    corpus: Sequence[Exemplar] | None = None,
    lm: tuple[Any, Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per (words, k): the user-swap accuracy of character n-grams and of the visible
    cues on ``items`` items of ``profile``'s unseen authors (drawn as notebook 05 draws them),
    with the texts and exemplars cut to ``words`` words (the profile's ``max_output_words``)
    and ``k`` exemplars per user.

    The authors, texts and items are the profile's (its seed and split sizes): the recipe
    probes set ``n_val_authors=0``, which changes which authors are unseen, so pass that
    override to read the grid beside a probe's figures. ``corpus``: the texts as
    :func:`~persrm_utils.data.exemplars.load_corpus` gave them (notebook 01 has them loaded);
    None loads the profile's corpus once. ``lm``: a ``(model, tokenizer)`` whose likelihood
    baseline joins each cell under :data:`~persrm_utils.evaluate.likelihood.LIKELIHOOD_NAME`.
    """
    corpus = list(corpus) if corpus is not None else load_corpus(profile)
    rows = []
    for words in lengths:
        cut = profile.override(max_output_words=words)
        exemplars = assign_splits(select(corpus, cut), cut)
        by_id = {e.text_id: e for e in exemplars}
        for k in ks:
            swap, _ = unseen_user_swap_pairs(exemplars, items, k, profile.seed)
            row: dict[str, Any] = {"words": words, "k": k}
            judges: dict[str, Any] = {
                "char n-grams": partial(stylometric_baseline, swap, by_id),
                "visible cues": partial(visible_cue_baseline, swap, by_id),
            }
            if lm is not None:
                judges[LIKELIHOOD_NAME] = partial(likelihood_baseline, *lm, swap, by_id)
            for name, judge in judges.items():
                s = user_swap_summary(predictions_frame(judge(), swap, name), swap)
                row[name] = {key: round(float(s[key]), 3) for key in
                             ("accuracy", "ci_low", "ci_high", "both_right")}  # fmt: skip
                row["n_items"] = int(s["n_pairs"])  # user-swap items
            rows.append(row)
    return rows


def signal_table(rows: list[dict[str, Any]]) -> Any:
    """:func:`signal_grid`'s rows as one line per judge and k (``model``), with ``words``,
    ``accuracy``, ``ci_low``, ``ci_high``, ``both_right`` and ``n_pairs`` (items) columns:
    the long format :func:`~persrm_utils.classroom.plots.accuracy_vs` draws. The visible cues
    are kept at k = 1 only, as the flat line they are."""
    import pandas as pd

    records = []
    for r in rows:
        for judge in ("char n-grams", "visible cues", LIKELIHOOD_NAME):
            if judge not in r or (judge == "visible cues" and r["k"] != 1):
                continue
            records.append({"model": f"{judge}, k={r['k']}", "words": r["words"], **r[judge],
                            "n_pairs": r["n_items"]})  # fmt: skip
    return pd.DataFrame.from_records(records)
