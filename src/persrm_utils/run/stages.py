"""The series as data: each stage, its notebook, what it needs and what it produces.

This table is the contract between notebooks (docs/design.md §4). The run folder uses it to
refuse a stage whose inputs are missing ("run 02_synthetic_pairs first"), and the runner uses it
to execute the notebooks in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from persrm_utils.errors import ConfigError


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    needs: tuple[str, ...]  # stages whose outputs this one reads
    produces: tuple[str, ...]  # main artifacts, relative to the run folder

    @property
    def notebook(self) -> str:
        return f"{self.name}.ipynb"


STAGES: tuple[Stage, ...] = (
    Stage("00_setup", "Set-up: environment, profile, run folder", (), ("environment.json",)),
    Stage(
        "01_exemplars",
        "Exemplars and personal factors",
        ("00_setup",),
        ("exemplars.jsonl",),
    ),
    Stage(
        "02_synthetic_pairs",
        "Synthetic preference pairs",
        ("01_exemplars",),
        ("pairs/train.jsonl", "pairs/val.jsonl", "pairs/test.jsonl", "pairs/seen_test.jsonl"),
    ),
    Stage("03_sft_qlora", "Reasoning SFT with QLoRA", ("02_synthetic_pairs",), ("sft_adapter",)),
    Stage(
        "04_grpo_unsloth",
        "GRPO with Unsloth",
        ("02_synthetic_pairs", "03_sft_qlora"),
        ("grpo_adapter",),
    ),
    Stage(
        "05_evaluation",
        "Evaluation with plots",
        ("02_synthetic_pairs", "03_sft_qlora", "04_grpo_unsloth"),
        ("eval/metrics.json",),
    ),
    Stage(
        "06_personalized_generation",
        "Personalized generation: best-of-N and the PersRM as a reward",
        ("02_synthetic_pairs", "04_grpo_unsloth", "05_evaluation"),
        ("bon/summary.csv",),
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def get_stage(name: str) -> Stage:
    """A stage by full name ('02_synthetic_pairs') or number ('02', '2')."""
    key = str(name).strip().removesuffix(".ipynb")
    for stage in STAGES:
        if key == stage.name or (key.isdigit() and int(key) == int(stage.name[:2])):
            return stage
    raise ConfigError(
        f"Unknown stage '{name}'.",
        f"Use one of {', '.join(STAGE_NAMES)} (or just its number, e.g. 02).",
    )
