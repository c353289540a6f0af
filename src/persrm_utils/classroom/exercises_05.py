"""The exercises of notebook 05 (Evaluation): each check recomputes the answer itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persrm_utils.evaluate.held_out import unseen_predictions
from persrm_utils.evaluate.metrics import bootstrap_ci, pair_scores

if TYPE_CHECKING:
    import pandas as pd

    from persrm_utils.run.folders import RunFolder

from persrm_utils.classroom.checks import (
    Checked,
    _call,
    _callable,
    _mapping,
    _not_answered,
    _number,
    _ok,
    _run,
    _wrong,
)

# 05 · Evaluation
# ----------------------------------------------------------------------------------------------


def _overall(run: RunFolder) -> pd.DataFrame:
    import pandas as pd

    table = pd.read_csv(run.path / "eval" / "overall.csv")
    return table.dropna(subset=["accuracy"])


def check_05_warmup(answer: Mapping[str, Any] | None, run: RunFolder | Path | str) -> Checked:
    """The most accurate model on unseen authors, and whether its interval is above chance.

    Verifies ``answer["best"]`` against the highest accuracy of eval/overall.csv (any tied model
    is right) and ``answer["beats_chance"]`` against that model's ``ci_low > 0.5``.
    """
    if answer is None:
        return _not_answered("eval/overall.csv: the top accuracy, and is its ci_low above 0.5?")
    got = _mapping(answer, ["best", "beats_chance"], "{'best': 'SFT', 'beats_chance': False}")
    table = _overall(_run(run)).set_index("model")
    best = sorted(table.index[table["accuracy"] == table["accuracy"].max()])
    if got["best"] not in best:
        _wrong(
            f"The highest accuracy, {table['accuracy'].max():.3f}, is by {' / '.join(best)}; "
            f"you named {got['best']!r}.",
            "sort eval/overall.csv by the accuracy column.",
        )
    row = table.loc[got["best"]]
    beats = bool(row["ci_low"] > 0.5)
    if got["beats_chance"] is not beats:
        _wrong(
            f"{got['best']}'s 95% interval is [{row['ci_low']:.3f}, {row['ci_high']:.3f}], so "
            f"beats_chance should be {beats}.",
            "above chance means the whole interval lies above 0.5.",
        )
    verdict = "above chance" if beats else "not distinguishable from chance"
    return _ok(
        f"{got['best']} leads with {row['accuracy']:.3f}, {verdict} "
        f"(interval [{row['ci_low']:.2f}, {row['ci_high']:.2f}], {row['n_pairs']:.0f} "
        "pairs)."
    )


def check_05_core(answer: Mapping[str, float] | None, run: RunFolder | Path | str) -> Checked:
    """Position-debiased accuracy on unseen authors, per model, from eval/predictions.jsonl.

    Verifies the learner's numbers against a recomputation (per pair the mean correctness over
    its two orders, then the mean over pairs, pairs of pairs/test.jsonl only) and that they
    reproduce eval/overall.csv for every model there.
    """
    if answer is None:
        return _not_answered("per model: mean over pairs of (mean 'correct' over both orders).")
    df = unseen_predictions(_run(run).path)
    recomputed = df.groupby(["model", "pair_id"])["correct"].mean().groupby("model").mean()
    table = _overall(_run(run)).set_index("model")
    got = _mapping(answer, list(table.index), "{'random': 0.5, 'SFT': 0.25, ...}")
    for model, value in got.items():
        if model not in recomputed.index:
            _wrong(
                f"There is no model {model!r} in eval/predictions.jsonl.",
                f"the models are {', '.join(recomputed.index)}.",
            )
        v = _number(value, f"answer[{model!r}]")
        if abs(v - recomputed[model]) > 1e-6:
            by_row = df[df["model"] == model]["correct"].mean()
            extra = " (the mean over rows, not over pairs)" if abs(v - by_row) < 1e-6 else ""
            _wrong(
                f"{model}: expected {recomputed[model]:.4f}, got {v:.4f}{extra}.",
                "keep only pairs of pairs/test.jsonl (unseen authors), average each pair's "
                "two orders first, then average over pairs.",
            )
    for model in table.index:
        if abs(recomputed[model] - table.loc[model, "accuracy"]) > 1e-9:
            _wrong(
                f"{model}: predictions.jsonl gives {recomputed[model]:.4f} but overall.csv "
                f"says {table.loc[model, 'accuracy']:.4f}: the files are out of step.",
                "rerun notebook 05 for this run.",
            )
    return _ok(f"your accuracies reproduce eval/overall.csv for all {len(table)} models.")


def _pair_scores(run: RunFolder) -> dict[str, Any]:
    """Per model, the unseen pairs' debiased scores (what the bootstrap resamples)."""

    scores = pair_scores(unseen_predictions(run.path))
    return {m: g["score"].to_numpy() for m, g in scores.groupby("model")}


def _ci(fn: Callable[..., Any], scores: Any, seed: int, case: str) -> tuple[float, float]:
    out = _call(fn, (scores, 1000, seed), case)
    if not isinstance(out, Sequence) or len(out) != 2:
        _wrong(
            f"Your function returned {out!r:.60} on {case}; expected (low, high).",
            "return a tuple of two floats.",
        )
    return _number(out[0], "low"), _number(out[1], "high")


def _check_interval(fn: Callable[..., Any], scores: Any, tol: float, case: str) -> None:
    """One score set: inside the scores' range, around the mean, close to bootstrap_ci."""
    import numpy as np

    low, high = _ci(fn, scores, 0, case)
    ref = bootstrap_ci(scores, 1000, 0)
    mean = float(np.mean(scores))
    if low < min(scores) - 1e-9 or high > max(scores) + 1e-9:
        _wrong(
            f"On {case} your interval ({low:.3f}, {high:.3f}) leaves the range of the scores: "
            "no resampled mean can.",
            "a normal approximation (mean +- 1.96 se) can; resample and take percentiles.",
        )
    if not low - 1e-9 <= mean <= high + 1e-9:
        _wrong(
            f"On {case} your interval ({low:.3f}, {high:.3f}) excludes the mean {mean:.3f}.",
            "return the 2.5th and the 97.5th percentile of the resampled means.",
        )
    if abs(low - ref[0]) > tol or abs(high - ref[1]) > tol:
        _wrong(
            f"On {case} your interval is ({low:.3f}, {high:.3f}); a percentile bootstrap "
            f"gives about ({ref[0]:.3f}, {ref[1]:.3f}).",
            "draw len(scores) indices with replacement per resample, take each "
            "resample's mean, then np.quantile(means, [0.025, 0.975]).",
        )


def check_05_stretch(answer: Callable[..., Any] | None, run: RunFolder | Path | str) -> Checked:
    """A learner's percentile bootstrap ``my_ci(scores, n_boot, seed) -> (low, high)``.

    Verifies it on synthetic pair scores (within 0.06 of ``bootstrap_ci`` for a skewed 20, where
    a normal approximation would leave [0, 1]; within 0.03 for 300), on the run's pair scores of
    every model (within 0.15: another random stream moves a percentile of a handful of pairs by a
    step or two), on equal scores (a zero-width interval), and that the same seed gives the same
    interval.
    """
    if answer is None:
        return _not_answered("resample the pair scores with replacement n_boot times; 2.5/97.5%.")
    import numpy as np

    fn = _callable(answer, "my_ci(scores, n_boot, seed) -> (low, high)")
    synthetic = np.random.default_rng(7).choice([0.0, 0.5, 1.0], size=300)
    cases = {
        "19 right pairs and 1 wrong": (np.array([1.0] * 19 + [0.0]), 0.06),
        "300 synthetic pair scores": (synthetic, 0.03),
    }
    cases |= {f"the run's pairs of {m!r}": (s, 0.15) for m, s in _pair_scores(_run(run)).items()}
    for case, (scores, tol) in cases.items():
        _check_interval(fn, scores, tol, case)
    if _ci(fn, np.full(10, 0.5), 0, "ten scores of 0.5") != (0.5, 0.5):
        _wrong(
            "Ten equal scores must give a zero-width interval (0.5, 0.5).",
            "every resample of equal values has the same mean.",
        )
    if _ci(fn, synthetic, 3, "seed 3") != _ci(fn, synthetic, 3, "seed 3, again"):
        _wrong(
            "The same scores and seed gave two different intervals.",
            "make the generator inside the function: np.random.default_rng(seed).",
        )
    return _ok(
        f"your bootstrap agrees with bootstrap_ci on {len(cases)} score sets, and is reproducible."
    )


# ----------------------------------------------------------------------------------------------
