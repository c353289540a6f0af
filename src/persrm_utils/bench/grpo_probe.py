"""Which GRPO prompt pool teaches the judge to read the person? GRPO from a finished run's SFT
adapter with changed profile fields, measured on that run's own personalization items.

A full series spends most of its time before GRPO; this probe reuses a run's pairs, exemplars
and SFT adapter, trains GRPO once with the fields asked for (``grpo_user_swap_items``,
``grpo_negative_types``, ``grpo_max_steps``, ``grpo_learning_rate``...), and judges what notebook
05 judged: the same user-swap items of unseen authors and the same unseen cross_author pairs,
with the exemplars and with none. Because the items are the run's own, the new judge is compared
with the run's SFT and SFT + GRPO judges *paired by item*
(:func:`~persrm_utils.evaluate.metrics.user_swap_difference`): a pool's effect is one interval,
not two overlapping ones side by side. Nothing in the run folder is changed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from persrm_utils.bench.probe import _counts
from persrm_utils.data.user_swap import unseen_user_swap_pairs
from persrm_utils.errors import MissingInputsError
from persrm_utils.evaluate.held_out import GRPO, SFT, unseen_predictions
from persrm_utils.evaluate.metrics import (
    accuracy_table,
    exemplar_effect,
    predictions_frame,
    user_swap_difference,
    user_swap_summary,
)
from persrm_utils.evaluate.personalization import read_user_swap_judgements
from persrm_utils.judge.judging import judge_pairs
from persrm_utils.profiles import get_profile
from persrm_utils.records import Pair, read_jsonl
from persrm_utils.run.folders import RunFolder
from persrm_utils.train.commands import grpo_pairs, load_stage_inputs
from persrm_utils.train.grpo import grpo_rows, load_policy, preflight, train_grpo
from persrm_utils.train.rewards import reward_funcs
from persrm_utils.train.sft import ADAPTER

EVAL_STAGE = "05_evaluation"


def _rounded(row: Mapping[str, Any]) -> dict[str, Any]:
    """Floats to 4 places, NaN (no figure: e.g. no valid verdict) to None, so the line is JSON."""
    return {k: (None if v != v else round(v, 4)) if isinstance(v, float) else v
            for k, v in row.items()}  # fmt: skip


def judged_cross_author(run_path: Path) -> list[Pair]:
    """The unseen cross_author pairs notebook 05 judged at k = 0 (those of its exemplar effect)."""
    rows = unseen_predictions(run_path)
    ids = set(rows.loc[rows["model"].str.endswith(", k=0")
                       & (rows["negative_type"] == "cross_author"), "pair_id"])  # fmt: skip
    return [p for p in read_jsonl(run_path / "pairs" / "test.jsonl", Pair) if p.pair_id in ids]


def run_grpo_probe(
    run_path: Path, name: str, changed: Mapping[str, Any], out: Path, batch_size: int = 8
) -> dict[str, Any]:
    """GRPO with ``changed`` profile fields from ``run_path``'s SFT adapter; a result dict.

    The adapter and the trainer's log go to ``out / name / "grpo"``. The run must have finished
    notebook 05 with its SFT judge on the user-swap items (``eval_user_swap_sft``), so that
    every figure has a paired reference.
    """
    folder = RunFolder.open(run_path)
    if not folder.is_done(EVAL_STAGE):
        raise MissingInputsError(
            f"run '{folder.manifest.run}' ({run_path}) has not finished {EVAL_STAGE}",
            "run the series through notebook 05 first: the probe compares with its judges.",
        )
    manifest = folder.manifest
    profile = get_profile(manifest.profile, **{**manifest.overrides, **changed})
    references = {m: read_user_swap_judgements(run_path, m) for m in (SFT, GRPO)}
    train, _, by_id = load_stage_inputs(run_path)
    pool = grpo_pairs(train, profile, by_id)
    rewards = reward_funcs(profile.reasoning)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    policy = load_policy(profile, run_path / "sft" / ADAPTER)
    rows = grpo_rows(pool, by_id, prefix=profile.answer_prefix)
    checked = preflight(policy, rows, profile.grpo_num_generations,
                        profile.max_completion_length, rewards, profile.grpo_preflight_prompts,
                        profile.seed)  # fmt: skip
    timings["preflight_s"] = round(time.perf_counter() - t0, 1)
    types = {p.pair_id: p.negative_type for p in pool}
    kept_types = _counts(types[row["pair_id"]] for row in checked.kept)
    result = train_grpo(profile, checked.kept, out / name / "grpo", rewards, loaded=policy,
                        resume=False)  # fmt: skip
    timings["grpo_s"] = round(result.seconds, 1)
    first, last = result.first_last("reward")

    policy.model.eval()
    new_tokens, prefix = profile.max_completion_length, profile.answer_prefix
    swap, _ = unseen_user_swap_pairs(list(by_id.values()), profile.eval_user_swap_items,
                                     profile.max_exemplars, profile.seed)  # fmt: skip
    t0 = time.perf_counter()
    verdicts = judge_pairs(policy.model, policy.tokenizer, swap, by_id, new_tokens,
                           f"{profile.model_name}:{name}", both_orders=True,
                           batch_size=batch_size, prefix=prefix)  # fmt: skip
    timings["judge_user_swap_s"] = round(time.perf_counter() - t0, 1)
    frame = predictions_frame(verdicts, swap, name)
    out_swap: dict[str, Any] = {"probe": _rounded(user_swap_summary(frame, swap))}
    for model, judged in references.items():
        out_swap[f"minus {model}"] = _rounded(
            user_swap_difference(frame, predictions_frame(judged, swap, model), swap)
        )

    cross = judged_cross_author(run_path)
    t0 = time.perf_counter()
    with_k = judge_pairs(policy.model, policy.tokenizer, cross, by_id, new_tokens, name,
                         both_orders=True, batch_size=batch_size, prefix=prefix)  # fmt: skip
    blind = judge_pairs(policy.model, policy.tokenizer, cross, by_id, new_tokens, f"{name} k=0",
                        both_orders=True, batch_size=batch_size, k=0, prefix=prefix)  # fmt: skip
    timings["judge_cross_author_s"] = round(time.perf_counter() - t0, 1)
    k_frame = predictions_frame(with_k, cross, name)
    table = accuracy_table(k_frame).iloc[0].to_dict()
    return {
        "name": name,
        "run": run_path.name,
        "changed": {k: list(v) if isinstance(v, tuple) else v for k, v in changed.items()},
        "pool": {"pairs": len(pool), "prompts": len(rows)},
        "preflight": {
            "checked": checked.checked,
            "varied": checked.varied,
            "kept": len(checked.kept),
            "kept_by_type": kept_types,
        },
        "grpo": {
            "steps": result.steps,
            "reward_first": first,
            "reward_last": last,
            "peak_rss_mb": round(result.peak_rss_mb),
        },
        "user_swap": out_swap,
        "cross_author": {
            "pairs": len(cross),
            "accuracy": _rounded(table),
            "says_a": round(sum(j.letter == "A" for j in with_k) / max(1, len(with_k)), 4),
            "exemplar_effect": _rounded(
                exemplar_effect(k_frame, predictions_frame(blind, cross, f"{name}, k=0"))
            ),
        },
        "timings": timings,
    }
