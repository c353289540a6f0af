"""Training inputs shared by the SFT, GRPO and resume tests: judge rows, a simulated disconnect,
and the GRPO rows of a smoke run."""

from __future__ import annotations

from transformers import TrainerCallback

from persrm_utils.run.folders import RunFolder
from persrm_utils.train.commands import load_stage_inputs
from persrm_utils.train.grpo import grpo_rows


def judge_rows(n: int = 8) -> list[dict]:
    """``n`` chat rows of a judge's answer, enough for a few SFT steps on the tiny model."""
    return [
        {"messages": [
            {"role": "system", "content": "You judge."},
            {"role": "user", "content": f"Pair {i}: which response, A or B?"},
            {"role": "assistant", "content": "<think> short factual sentences </think>\n"
                                             "<answer>[[A]]</answer>"},
        ]}
        for i in range(n)
    ]  # fmt: skip


class StopAt(TrainerCallback):
    """A kill (a Colab disconnect) right after a given step, before its checkpoint."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated disconnect")
        return control


def grpo_rows_of(run: RunFolder) -> list[dict]:
    """The GRPO rows (both orders, with labels) of a smoke run's training pairs."""
    train, _, by_id = load_stage_inputs(run.path)
    return grpo_rows(train, by_id)
