"""Stage 04 as one function, for ``persrm grpo`` and ``accelerate launch``.

    persrm grpo --profile t4 --run t4-1
    accelerate launch -m persrm_utils.cli grpo --profile 24gb --run r

Every process trains; only rank 0 writes the adapter and the manifest (see ``sft_stage``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from persrm_utils.sft_stage import begin_stage, load_stage_inputs

STAGE = "04_grpo_unsloth"


def run_grpo_stage(
    profile_name: str = "smoke",
    run_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """GRPO from the SFT adapter, recorded in the run folder's manifest (rank 0 only)."""
    from persrm_utils.grpo import TRAIN_LOG, grpo_rows, load_policy, preflight, train_grpo
    from persrm_utils.rewards import reward_funcs
    from persrm_utils.runs import RunFolder
    from persrm_utils.sft import ADAPTER

    begun = begin_stage(STAGE, profile_name, run_name, overrides, force)
    if begun is None:
        return {"skipped": True}
    profile, run, main = begun
    train, _, by_id = load_stage_inputs(run.path)
    out_dir = run.path / "grpo"
    rewards = reward_funcs(profile.reasoning)
    policy = load_policy(profile, run.path / "sft" / ADAPTER)
    checked = preflight(
        policy, grpo_rows(train, by_id, prefix=profile.answer_prefix),
        profile.grpo_num_generations,
        profile.max_completion_length, rewards, profile.grpo_preflight_prompts, profile.seed,
    )  # fmt: skip
    result = train_grpo(profile, checked.kept, out_dir, rewards, loaded=policy)
    if main:
        run = RunFolder.open(run.path)
        run.finish_stage(STAGE, [out_dir / ADAPTER, out_dir / TRAIN_LOG])
        first, last = result.first_last("reward")
        print(
            f"{STAGE}: {result.steps} steps in {result.seconds:.1f} s, reward {first:.3f} -> "
            f"{last:.3f}, adapter in {out_dir / ADAPTER}"
        )
    return {"grpo": json.loads(json.dumps(asdict(result), default=str))}
