"""Stage 03 as one function, for ``persrm sft`` and multi-GPU launches.

    persrm sft --profile t4 --run t4-1                                   # one process
    accelerate launch -m persrm_utils.cli sft --profile 24gb --run-name r  # several GPUs
    torchrun --nproc_per_node 2 -m persrm_utils.cli sft --profile smoke --run-name r  # 2 CPUs

The notebook ``03_sft_qlora`` runs the same steps one cell at a time. Under a launcher every
process trains (``SFTTrainer`` wires up DDP from the launcher's environment), while only the
main process (rank 0) writes traces, the adapter and the manifest: two ranks writing one
manifest would corrupt it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from persrm_utils.pairs import Pair
from persrm_utils.profiles import Profile
from persrm_utils.records import Exemplar, read_jsonl, write_jsonl

STAGE = "03_sft_qlora"


def rank() -> int:
    """This process's global rank under torchrun/accelerate (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def load_stage_inputs(run_path: Path) -> tuple[list[Pair], list[Pair], dict[str, Exemplar]]:
    """Training pairs, validation pairs and exemplars by id, from notebooks 01 and 02."""
    train = read_jsonl(run_path / "pairs" / "train.jsonl", Pair)
    val = read_jsonl(run_path / "pairs" / "val.jsonl", Pair)
    exemplars = read_jsonl(run_path / "exemplars.jsonl", Exemplar)
    return train, val, {e.text_id: e for e in exemplars}


def sft_pairs(train: list[Pair], profile: Profile) -> list[Pair]:
    """The training pairs SFT writes traces for: those of ``profile.sft_negative_types``.

    A curriculum: a small judge first learns the blatant type it can learn in the budget (the
    `cpu` profile: ``style_random``); GRPO then samples from every training pair and keeps the
    ones the SFT judge is unsure about, which are mostly of the types SFT left out.
    """
    kinds = profile.sft_negative_types
    return [p for p in train if kinds is None or p.negative_type in kinds]


def make_traces(train: list[Pair], by_id: dict[str, Exemplar], reasoning: str = "full"):
    """Offline traces for every training pair, in both A/B orders, as long as ``reasoning`` says.

    ``reasoning`` is the profile's field: "full" (the stylometric writer), "short" (visible cues)
    or "none" (verdict only); see :func:`persrm_utils.traces.reasoning_traces`.
    """
    from persrm_utils.traces import reasoning_traces

    return reasoning_traces(train, by_id, reasoning)  # type: ignore[arg-type]


def begin_stage(
    stage: str,
    profile_name: str,
    run_name: str | None,
    overrides: dict[str, Any] | None,
    force: bool,
):
    """(profile, run folder, is_main), or None when the stage is done and not forced.

    Only the main process (rank 0) marks the stage as running; the other ranks only check that
    its inputs exist, so two processes never write the manifest at once.
    """
    from persrm_utils.profiles import get_profile
    from persrm_utils.runs import RunFolder

    profile = get_profile(profile_name, **(overrides or {}))
    main = rank() == 0
    run = RunFolder.create(run_name or profile.name, profile.name, overrides)
    if main:
        if run.is_done(stage) and not force:
            print(f"{stage} is already done in {run.path} (use --force to train again)")
            return None
        run.start_stage(stage, config=profile.model_dump(mode="json"))
    else:
        run.require(stage)
    return profile, run, main


def run_sft_stage(
    profile_name: str = "smoke",
    run_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Traces -> SFT -> adapter, recorded in the run folder's manifest (rank 0 only)."""
    from persrm_utils.runs import RunFolder
    from persrm_utils.sft import ADAPTER, TRAIN_LOG, train_sft
    from persrm_utils.traces import to_sft_rows

    begun = begin_stage(STAGE, profile_name, run_name, overrides, force)
    if begun is None:
        return {"skipped": True}
    profile, run, main = begun
    train, _, by_id = load_stage_inputs(run.path)
    traces, stats = make_traces(sft_pairs(train, profile), by_id, profile.reasoning)
    out_dir = run.path / "sft"
    if main:
        write_jsonl(run.file("sft/traces.jsonl"), traces)
    result = train_sft(profile, to_sft_rows(traces), out_dir)
    summary = {"traces": stats, "sft": asdict(result)}
    if main:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        run = RunFolder.open(run.path)
        run.finish_stage(
            STAGE,
            [out_dir / ADAPTER, out_dir / TRAIN_LOG, out_dir / "traces.jsonl",
             out_dir / "summary.json"],
        )  # fmt: skip
        print(
            f"{STAGE}: {result.steps} steps in {result.seconds:.1f} s, loss "
            f"{result.start_loss:.3f} -> {result.end_loss:.3f}, adapter in {out_dir / ADAPTER}"
        )
    return summary
