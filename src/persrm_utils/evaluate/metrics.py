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

from collections.abc import Mapping, Sequence
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


# ----------------------------------------------------------------------------------------------
# Personalization: does the judge use the exemplars at all?
# ----------------------------------------------------------------------------------------------


def format_interval(value: float, low: float, high: float, n: int, signed: bool = False) -> str:
    """``"0.120 [0.040, 0.200], n=100"``, or, below :data:`MIN_PAIRS_FOR_CI` pairs,
    ``"0.120 (n=6, too few for an interval)"``; ``"not measured"`` for a missing value.
    ``signed`` writes ``"+0.120 [+0.040, +0.200]"``: for a difference, whose sign is the news."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "not measured"
    f = "{:+.3f}" if signed else "{:.3f}"
    if n < MIN_PAIRS_FOR_CI:
        return f"{f.format(value)} (n={n}, too few for an interval)"
    return f"{f.format(value)} [{f.format(low)}, {f.format(high)}], n={n}"


def format_user_swap_difference(diff: Mapping[str, Any], x: str, y: str) -> str:
    """One line for a :func:`user_swap_difference`: ``x`` minus ``y`` with its paired interval
    and both accuracies, as the comparison scripts print it (runs or recipe probes)."""
    return (
        f"user-swap accuracy, {x} minus {y}, on the same {diff['n_items']} items: "
        f"{diff['difference']:+.3f} [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}] "
        f"({diff['accuracy_x']:.3f} against {diff['accuracy_y']:.3f})"
    )


def _paired_difference(
    x: pd.Series, y: pd.Series, none_in_common: DataError, n_boot: int, seed: int, level: float
) -> tuple[int, float, float, float, float, float]:
    """(n, mean of x - y, interval low, high, mean x, mean y) over the units both score.

    ``x`` and ``y`` hold one score per unit (pair or user-swap item), indexed by the unit; the
    interval is a bootstrap of the per-unit differences. No unit in common raises
    ``none_in_common``.
    """
    common = x.index.intersection(y.index).sort_values()
    if not len(common):
        raise none_in_common
    diffs = (x[common] - y[common]).to_numpy()
    low, high = bootstrap_ci(diffs, n_boot, seed, level)
    return (
        len(common),
        float(diffs.mean()),
        low,
        high,
        float(x[common].mean()),
        float(y[common].mean()),
    )


def exemplar_effect(
    with_k: pd.DataFrame,
    without: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float | int]:
    """Accuracy with the exemplars minus accuracy with none (k = 0), on the same pairs, paired.

    ``with_k`` and ``without`` are :func:`predictions_frame` outputs of one judge each (the
    profile's k, and ``judge_pairs(..., k=0)``). Each pair's debiased score is taken under both,
    and the interval is a bootstrap of the per-pair *differences*: the same pairs are resampled
    for both arms, so the noise of which pairs happen to be easy cancels (two side-by-side
    intervals would be far wider than the difference's own). Only pairs judged in both arms
    count; none in common is an error. Identical judges give 0.0 and [0.0, 0.0].
    """
    diff = accuracy_difference(
        with_k,
        without,
        n_boot,
        seed,
        level,
        fix="judge the same pairs with the exemplars and with k=0 (judge_pairs(..., k=0)).",
    )
    return {
        "n_pairs": diff["n_pairs"],
        "effect": diff["difference"],
        "ci_low": diff["ci_low"],
        "ci_high": diff["ci_high"],
        "accuracy_k": diff["accuracy_x"],
        "accuracy_0": diff["accuracy_y"],
    }


def accuracy_difference(
    x: pd.DataFrame,
    y: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    fix: str = "judge the same pairs with both judges.",
) -> dict[str, float | int]:
    """Accuracy of judge ``x`` minus judge ``y`` on the same pairs, paired.

    Both are :func:`predictions_frame` outputs. As in :func:`exemplar_effect`, each pair's
    debiased score is taken under both judges and the interval is a bootstrap of the per-pair
    differences: two judges' side-by-side intervals overlap long after their difference is
    clear. Only pairs both judged count; none in common is an error.
    """
    _check_columns(x, ["pair_id", "swap", "letter", "valid", "correct"])
    _check_columns(y, ["pair_id", "swap", "letter", "valid", "correct"])
    n, diff, low, high, acc_x, acc_y = _paired_difference(
        x.groupby("pair_id")["correct"].mean().astype(float),
        y.groupby("pair_id")["correct"].mean().astype(float),
        DataError(
            "the two predictions frames have no pair in common",
            fix,
            field="pair_id",
        ),
        n_boot,
        seed,
        level,
    )
    return {
        "n_pairs": n,
        "difference": diff,
        "ci_low": low,
        "ci_high": high,
        "accuracy_x": acc_x,
        "accuracy_y": acc_y,
    }


def _with_swap_groups(df: pd.DataFrame, pairs: Sequence[Pair], fix: str) -> pd.DataFrame:
    """``df`` with each row's user-swap item (``group``) and ``user``, from the pairs' meta.

    A judgement whose pair is not among ``pairs`` (``fix`` says what to pass instead), or a pair
    without ``meta.swap_group``, is an error: grouping would silently drop or merge rows.
    """
    meta = {p.pair_id: p.meta for p in pairs}
    missing = sorted(set(df["pair_id"]) - set(meta))
    if missing:
        raise DataError(
            f"judgement for pair '{missing[0]}' has no matching user-swap pair",
            fix,
            field="pair_id",
        )
    frame = df.assign(
        group=df["pair_id"].map(lambda i: meta[i].get("swap_group")),
        user=df["pair_id"].map(lambda i: meta[i].get("user")),
    )
    if frame["group"].isna().any():
        raise DataError(
            "a pair without meta.swap_group was passed as a user-swap pair",
            "build the pairs with persrm_utils.data.user_swap.user_swap_pairs.",
            field="meta.swap_group",
        )
    return frame


def user_swap_summary(
    df: pd.DataFrame,
    pairs: Sequence[Pair],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float | int]:
    """Accuracy on the user-swap test (:mod:`persrm_utils.data.user_swap`), per item, paired.

    ``df`` is one judge's :func:`predictions_frame` on the user-swap ``pairs`` (both users'
    versions, both orders). An item's score is the mean correctness over its (up to) four
    verdicts; the accuracy is the mean over items and its interval resamples items (the four
    verdicts of one item are one question). ``both_right`` is, per item, the share of orders in
    which the judge was right under *both* users, averaged over items: it is 0 for a judge that
    ignores the exemplars (its letter is the same under both users, and exactly one of them is
    right), which also scores exactly 0.5 (less if some of its outputs are invalid).
    """
    _check_columns(df, ["pair_id", "swap", "valid", "correct"])
    frame = _with_swap_groups(
        df, pairs, "pass the user-swap pairs the judge was run on (user_swap_pairs(...))."
    )
    scores = frame.groupby("group", sort=True)["correct"].mean().astype(float)
    by_order = frame.pivot_table(
        index=["group", "swap"], columns="user", values="correct", aggfunc="max"
    )
    if {"a", "b"} <= set(by_order.columns):
        both = (by_order["a"].astype(bool) & by_order["b"].astype(bool)).astype(float)
        both_right = float(both.groupby(level="group").mean().mean())
    else:
        both_right = np.nan
    low, high = bootstrap_ci(scores.to_numpy(), n_boot, seed, level)
    return {
        "n_pairs": len(scores),
        "accuracy": float(scores.mean()) if len(scores) else np.nan,
        "ci_low": low,
        "ci_high": high,
        "both_right": both_right,
        "parse_failure_rate": float(1.0 - frame["valid"].astype(float).mean())
        if len(frame)
        else np.nan,
    }


def user_swap_difference(
    df_x: pd.DataFrame,
    df_y: pd.DataFrame,
    pairs: Sequence[Pair],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float | int]:
    """User-swap accuracy of judge x minus judge y, on the same items, paired.

    Two runs of one profile's data judge the same user-swap items, so a change of recipe can be
    read as a difference per item with one interval (a bootstrap of the per-item differences),
    as :func:`exemplar_effect` does for pairs: two side-by-side intervals would overlap long
    after the paired one has left zero. ``df_x`` and ``df_y`` are :func:`predictions_frame`
    outputs on the user-swap ``pairs``; only items judged by both count, none in common is an
    error.
    """
    fix = (
        "compare runs of the same data (corpus, authors, texts, seed and eval_user_swap_items), "
        "and pass the user-swap pairs they were judged on."
    )
    for df in (df_x, df_y):
        _check_columns(df, ["pair_id", "correct"])
    x, y = (
        _with_swap_groups(df, pairs, fix).groupby("group")["correct"].mean().astype(float)
        for df in (df_x, df_y)
    )
    n, difference, low, high, acc_x, acc_y = _paired_difference(
        x,
        y,
        DataError(
            "the two judges have no user-swap item in common",
            "compare runs of the same data (corpus, authors, texts, seed and "
            "eval_user_swap_items).",
            field="pair_id",
        ),
        n_boot,
        seed,
        level,
    )
    return {
        "n_items": n,
        "difference": difference,
        "ci_low": low,
        "ci_high": high,
        "accuracy_x": acc_x,
        "accuracy_y": acc_y,
    }
