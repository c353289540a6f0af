"""Scoring a judge the way the series reports it: debiased accuracy, with honest error bars.

Every judge in notebook 05 (the baselines, the base model, SFT, SFT + GRPO) is run on the same
pairs in **both** A/B orders, and turned into one tidy table by :func:`predictions_frame` (one
row per pair and order). :func:`accuracy_table` then summarises it per model, optionally broken
down by negative type, number of exemplars ``k`` or seen/unseen authors (docs/design.md §8).

Why these numbers and not plain accuracy:

* **Position-debiased accuracy.** Small judges like to answer "A". Because every pair is asked
  in both orders and the real text is A in exactly one of them, a judge that always says "A" is
  right exactly half the time, which is the chance level it deserves. Each pair's score is the
  mean over its two orders; the table's accuracy is the mean over pairs.
* **Invalid output counts as wrong**, never as skipped: a judge that learns to say nothing must
  not look better for it. How often that happens is reported separately (parse failure rate).
* **Swap consistency**: the share of pairs where both verdicts point at the *same text* (so the
  letter changes when the texts swap places). A judge with no idea but a position habit is
  consistent 0% of the time; one with a real preference, 100%.
* **Position bias**: the share of valid verdicts that say "A" (0.5 is unbiased), the usual cause
  of low consistency.
* **Pair-level bootstrap** for the 95% interval: the two orders of one pair are the same
  question asked twice, so their verdicts are correlated. Resampling rows would pretend there
  are twice as many independent questions and give intervals that are too narrow; we resample
  pairs. The generator is seeded, so the same input always gives the same interval.

Everything here is plain pandas and numpy and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from persrm_utils.errors import DataError
from persrm_utils.judge.judging import Judgement
from persrm_utils.records import Pair

#: Columns of :func:`predictions_frame`, in order.
PREDICTION_COLUMNS: tuple[str, ...] = (
    "model",
    "pair_id",
    "swap",
    "label",
    "letter",
    "valid",
    "correct",
    "negative_type",
    "k",
    "seen",
    "split",
)

#: Columns :func:`accuracy_table` adds after ``model`` and the ``by`` columns.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "n_pairs",
    "accuracy",
    "ci_low",
    "ci_high",
    "swap_consistency",
    "parse_failure_rate",
    "position_bias",
)


def predictions_frame(
    judgements: Sequence[Judgement], pairs: Sequence[Pair], model: str, k: int | None = None
) -> pd.DataFrame:
    """One row per (pair, order) with everything the breakdowns need (see PREDICTION_COLUMNS).

    ``k`` is the number of exemplars the judge saw: by default each pair's own
    ``len(exemplar_ids)``; pass the value given to ``judge_pairs(..., k=...)`` for an ablation
    that showed fewer. ``seen`` is "seen" for the seen-author test split and "unseen" otherwise.
    A judgement whose pair is not among ``pairs`` is an error, not a silent drop: a table built
    from the wrong pairs file would otherwise report numbers for the wrong questions.
    """
    by_id = {p.pair_id: p for p in pairs}
    rows = []
    for j in judgements:
        pair = by_id.get(j.pair_id)
        if pair is None:
            raise DataError(
                f"judgement for pair '{j.pair_id}' has no matching pair",
                "pass the same pairs the judge was run on (e.g. pairs/test.jsonl).",
                field="pair_id",
            )
        valid = j.letter in ("A", "B")
        rows.append(
            {
                "model": model,
                "pair_id": j.pair_id,
                "swap": bool(j.swap),
                "label": j.label,
                "letter": j.letter if valid else None,
                "valid": valid,
                "correct": bool(valid and j.letter == j.label),
                "negative_type": pair.negative_type,
                "k": len(pair.exemplar_ids) if k is None else int(k),
                "seen": "seen" if pair.split == "seen_test" else "unseen",
                "split": pair.split,
            }
        )
    frame = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    duplicated = frame.duplicated(["model", "pair_id", "swap"])
    if duplicated.any():
        first = frame.loc[duplicated].iloc[0]
        raise DataError(
            f"pair '{first.pair_id}' (swap={first.swap}) is judged more than once",
            "pass one judgement per pair and order; concatenate frames of different models "
            "with pd.concat instead.",
            field="pair_id",
        )
    return frame


def pair_scores(df: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (model, *by, pair): the pair's debiased score and whether it was consistent.

    ``score`` is the mean correctness over the pair's orders (0, 0.5 or 1 when both are
    present). ``consistent`` is 1.0 when the pair has both orders, both verdicts are valid and
    the letters differ (the same text was picked both times), 0.0 otherwise, and NaN when an
    order is missing, so such pairs are left out of swap consistency rather than counted as
    failures. Handy for plots that show the spread over pairs, not just the mean.
    """
    keys = ["model", *by, "pair_id"]
    _check_columns(df, [*keys, "swap", "letter", "valid", "correct"])
    grouped = df.groupby(keys, sort=True, dropna=False)
    has_both = grouped["swap"].nunique() == 2
    same_text = grouped["valid"].all() & (grouped["letter"].nunique() == 2)
    out = pd.DataFrame(
        {
            "score": grouped["correct"].mean().astype(float),
            "consistent": same_text.astype(float).where(has_both),
            "n_orders": grouped.size(),
        }
    )
    return out.reset_index()


def bootstrap_ci(
    scores: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``scores`` (one value per pair).

    The caller passes pair-level scores, so what is resampled is pairs (see the module
    docstring). A fresh ``numpy.random.default_rng(seed)`` per call makes the interval a pure
    function of its inputs: the same scores and seed give the same interval in any order of calls.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0:
        return (np.nan, np.nan)
    if n_boot < 1:
        raise DataError(f"n_boot={n_boot}", "use at least 1 bootstrap resample (1000 is usual).")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, scores.size, size=(n_boot, scores.size))
    means = scores[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _check_columns(df: pd.DataFrame, needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(
            f"the predictions frame lacks column(s) {', '.join(missing)}",
            "build it with predictions_frame(...), and break down only by its columns "
            f"({', '.join(PREDICTION_COLUMNS)}).",
        )


def accuracy_table(
    df: pd.DataFrame,
    by: Sequence[str] = (),
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per model (and per group of ``by``): n_pairs, accuracy with its bootstrap interval,
    swap consistency, parse failure rate and position bias (see the module docstring).

    ``df`` is one or more :func:`predictions_frame` outputs concatenated. ``by`` names columns to
    break down by, e.g. ``["negative_type"]``, ``["k"]`` or ``["seen"]``. Rows come out sorted
    by model and groups, so the table is identical from run to run.
    """
    by = list(by)
    _check_columns(df, ["model", *by, "pair_id", "swap", "letter", "valid", "correct"])
    if df.empty:
        return pd.DataFrame(columns=["model", *by, *SUMMARY_COLUMNS])
    rows = []
    for key, rows_of_group in df.groupby(["model", *by], sort=True, dropna=False):
        group = pair_scores(rows_of_group, by)
        valid = rows_of_group[rows_of_group["valid"].astype(bool)]
        low, high = bootstrap_ci(group["score"].to_numpy(), n_boot, seed, level)
        consistent = group["consistent"].dropna()
        rows.append(
            {
                **dict(zip(["model", *by], key, strict=True)),
                "n_pairs": len(group),
                "accuracy": float(group["score"].mean()),
                "ci_low": low,
                "ci_high": high,
                "swap_consistency": float(consistent.mean()) if len(consistent) else np.nan,
                "parse_failure_rate": float(1.0 - rows_of_group["valid"].astype(float).mean()),
                "position_bias": float((valid["letter"] == "A").mean()) if len(valid) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["model", *by, *SUMMARY_COLUMNS])


#: Below this many pairs an interval is not printed: the bootstrap of a handful of pairs is
#: either degenerate (every resample the same) or so wide it says nothing, and printing it
#: invites reading it as a result.
MIN_PAIRS_FOR_CI = 10


def format_accuracy(row: Any, with_n: bool = False) -> str:
    """``"0.650 [0.550, 0.740]"`` (``", n=30"`` added with ``with_n``), or, below
    :data:`MIN_PAIRS_FOR_CI` pairs, ``"0.500 (n=6, too few for an interval)"``."""
    n = int(row["n_pairs"])
    if n < MIN_PAIRS_FOR_CI:
        return f"{row['accuracy']:.3f} (n={n}, too few for an interval)"
    ci = f"{row['accuracy']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    return f"{ci}, n={n}" if with_n else ci


def readable_table(table: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """An :func:`accuracy_table` for reading: accuracy with its interval (or n), n per row."""
    out = table[["model", *by]].copy()
    out["accuracy [95% CI]"] = table.apply(format_accuracy, axis=1)
    out["pairs"] = table["n_pairs"].astype(int)
    out["swap consistency"] = table["swap_consistency"].round(3)
    out["says A"] = table["position_bias"].round(2)
    return out
