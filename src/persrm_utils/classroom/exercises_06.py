"""The exercises of notebook 06 (Personalized generation): each check recomputes the answer
itself.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persrm_utils.use.best_of_n import comparison_plan, score_tournament

if TYPE_CHECKING:
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

# 06 · Personalized generation
# ----------------------------------------------------------------------------------------------


def _drafts(run: RunFolder) -> list[dict[str, Any]]:
    with (run.path / "bon" / "drafts.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def check_06_warmup(
    answer: Callable[[int, int], int] | None, run: RunFolder | Path | str
) -> Checked:
    """A learner's ``n_comparisons(n_tasks, n_drafts)``: judge calls of the round-robin.

    Verifies it against ``len(comparison_plan(n_drafts)) * n_tasks`` for several sizes and
    against the comparisons this run recorded in bon/info.json.
    """
    if answer is None:
        return _not_answered("every draft meets every other draft twice (as A and as B).")

    fn = _callable(answer, "n_comparisons(n_tasks, n_drafts) -> int")
    info = json.loads((_run(run).path / "bon" / "info.json").read_text(encoding="utf-8"))
    sizes = [(1, 2), (3, 3), (6, 4), (24, 4), (48, 6), (info["tasks"], info["drafts"])]
    for tasks, n in sizes:
        expected = tasks * len(comparison_plan(n))
        got = _call(fn, (tasks, n), f"n_tasks={tasks}, n_drafts={n}")
        if got != expected:
            _wrong(
                f"n_comparisons({tasks}, {n}) returned {got!r}, expected {expected}.",
                "each of the n drafts meets the n - 1 others twice, per task.",
            )
    if fn(info["tasks"], info["drafts"]) != info["comparisons"]:
        _wrong(
            f"This run recorded {info['comparisons']} comparisons in bon/info.json.",
            "compare with the tasks and drafts it records.",
        )
    return _ok(
        f"this run made {info['comparisons']} comparisons; the 24gb profile makes {fn(48, 6):,}."
    )


def _nan_argmin(values: Sequence[float]) -> list[int]:
    """Every index of the smallest value, NaN (an empty draft) never chosen."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return []
    return [i for i, v in enumerate(values) if v == min(finite)]


def check_06_core(answer: Mapping[str, Any] | None, run: RunFolder | Path | str) -> Checked:
    """Re-pick every task's draft by the smallest style distance, from bon/drafts.jsonl.

    Verifies ``answer["picks"]`` (task id -> draft index; any tie is right) and
    ``answer["mean_style_distance"]`` of those picks against the stored ``style_distance``
    lists: the referee's own measure used as the picking rule.
    """
    if answer is None:
        return _not_answered("per task in bon/drafts.jsonl: argmin of 'style_distance'.")
    got = _mapping(
        answer,
        ["picks", "mean_style_distance"],
        "{'picks': {'bon-...': 2, ...}, 'mean_style_distance': 8.9}",
    )
    rows = _drafts(_run(run))
    picks = got["picks"]
    if not isinstance(picks, Mapping) or set(picks) != {r["task_id"] for r in rows}:
        _wrong(
            f"answer['picks'] should map each of the {len(rows)} task ids to a draft index.",
            "key by row['task_id'] for every row of bon/drafts.jsonl.",
        )
    chosen = []
    for row in rows:
        best = _nan_argmin(row["style_distance"])
        if picks[row["task_id"]] not in best:
            _wrong(
                f"Task {row['task_id']}: the closest draft is {best}, you picked "
                f"{picks[row['task_id']]!r}.",
                "smallest style_distance wins; a NaN (empty draft) never does.",
            )
        chosen.append(row["style_distance"][picks[row["task_id"]]])
    mean = sum(chosen) / len(chosen)
    if abs(_number(got["mean_style_distance"], "answer['mean_style_distance']") - mean) > 1e-6:
        _wrong(
            f"The mean style distance of these picks is {mean:.4f}.",
            "average style_distance[pick] over the tasks.",
        )
    real = [r["picks"]["PersRM"] for r in rows]
    persrm = sum(r["style_distance"][i] for r, i in zip(rows, real, strict=True)) / len(rows)
    return _ok(
        f"mean style distance {mean:.2f} (PersRM's picks: {persrm:.2f}): a rule that "
        "optimises the referee's own measure wins on that referee by construction."
    )


def check_06_stretch(answer: Callable[..., Sequence[float]] | None) -> Checked:
    """A learner's ``win_rates(n, letters)``: each draft's score in a round-robin tournament.

    Verifies it against ``best_of_n.score_tournament(...).scores`` on 20 seeded tournaments of
    2 to 5 drafts whose letters are "A", "B" or None (no valid verdict: nobody wins), listed
    in ``comparison_plan(n)`` order.
    """
    if answer is None:
        return _not_answered("walk comparison_plan(n): 'A' is a win for i, 'B' for j.")

    fn = _callable(answer, "win_rates(n, letters) -> list[float]")
    rng = random.Random(0)
    for trial in range(20):
        n = 2 + trial % 4
        letters = [rng.choice(["A", "B", None]) for _ in comparison_plan(n)]
        if trial == 0:
            letters = ["A"] * len(letters)  # a judge that always says A
        expected = score_tournament("t", n, letters).scores
        got = _call(fn, (n, letters), f"n={n}, letters={letters}")
        try:
            close = len(got) == n and all(
                abs(float(g) - e) < 1e-9 for g, e in zip(got, expected, strict=True)
            )
        except (TypeError, ValueError):
            close = False
        if not close:
            _wrong(
                f"For n={n} and letters {letters} you return {got!r}, expected {expected}.",
                "wins / (2 * (n - 1)) per draft; a None verdict is a win for nobody.",
            )
    return _ok("your win rates match score_tournament; an always-'A' judge ties every draft.")
