"""The GPU check's options and its recorder: what every part of the check takes.

The orchestrator (:mod:`persrm_utils.bench.gpu_check`) writes the options to a file, each part
reads them back in its own process and writes its figures through a :class:`Recorder`; keeping
both here lets the parts and the orchestrator import them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persrm_utils.bench.timebox import write_json_atomic

PARTS = ("environment", "mechanics", "learning", "judging")


STATUSES = ("ok", "failed", "skipped", "timeout")


#: Seconds per part: 560 in all, so that the whole check fits in 10 minutes with start-up.
#: The environment part imports Unsloth cold (its first import writes a compiled cache). The
#: mechanics part builds a random 1.5B model, then per backend loads it with on-the-fly 4-bit
#: quantization, runs SFT steps and a GRPO step, whose first step Unsloth compiles. With a cap of
#: 195 s the Unsloth side had at most half of what the build left (under 93 s) for all of that;
#: now the part has 300 s, Unsloth 60 % of it, and fewer steps (``mechanics_steps``). The caps
#: are estimates: not yet measured on a GPU.
DEFAULT_CAPS: dict[str, float] = {
    "environment": 75,
    "mechanics": 300,
    "learning": 150,
    "judging": 35,
}
#: Share of the mechanics part's remaining time that the Unsloth backend gets (plain TRL the rest).
UNSLOTH_SHARE = 0.6


#: A dry run exercises the plumbing on a CPU that may be shared: its caps are looser.
DRY_RUN_CAP_FACTOR = 3.0


JSON_NAME, MD_NAME = "gpu_check.json", "gpu_check.md"


#: The learning run of a dry run: the ``smoke`` profile, one step each, short outputs, few pairs.
DRY_SCALE: dict[str, Any] = {
    "sft_max_steps": 1,
    "grpo_max_steps": 1,
    "max_completion_length": 32,
    "eval_max_pairs": 3,
    # the learning run's user-swap lever, at its smallest: the teacher's code path runs too
    "sft_user_swap_items": 1,
    "sft_user_swap_teacher": True,
    "sft_user_swap_candidates": 4,
}


@dataclass
class CheckOptions:
    """Everything a part needs, written to a file that each part's process reads back."""

    out: str = "gpu_check"
    dry_run: bool = False
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    caps: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CAPS))
    smollm2: str | None = None
    c50: str | None = None
    #: Learning run: overrides of the ``cpu`` profile that only ask for more (data, steps).
    scale: dict[str, Any] = field(default_factory=dict)
    #: Learning run in a dry run: overrides of the ``smoke`` profile (one step each).
    dry_scale: dict[str, Any] = field(default_factory=lambda: dict(DRY_SCALE))
    #: (SFT, GRPO) steps per backend: the second SFT step gives a step time without start-up;
    #: one GRPO step (its compile included) shows that GRPO runs and what it peaks at.
    mechanics_steps: tuple[int, int] = (2, 1)
    eval_batch: int = 32
    judging: tuple[int, int, int] = (16, 16, 64)  # pairs, batch, new tokens
    fail_part: str | None = None  # tests only: make this part raise

    def cap(self, part: str) -> float:
        factor = DRY_RUN_CAP_FACTOR if self.dry_run else 1.0
        return factor * float(self.caps.get(part, DEFAULT_CAPS[part]))


class Recorder:
    """A part's figures, rewritten to its result file at every update (kill-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"status": "running", "figures": {}, "notes": []}
        self.flush()

    @property
    def figures(self) -> dict[str, Any]:
        return self.data["figures"]

    def flush(self) -> None:
        write_json_atomic(self.path, self.data)

    def set(self, key: str, value: Any) -> None:
        self.figures[key] = value
        self.flush()

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        self.flush()

    def skip(self, reason: str) -> None:
        self.data["status"] = "skipped"
        self.data["reason"] = reason
        self.flush()


INSTALL_HINT = (
    "install the GPU extras: `bash scripts/install_offline.sh wheelhouse/` (offline) or "
    "`pip install -r requirements/gpu.txt`"
)
