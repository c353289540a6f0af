"""What every trainer of the series shares: run (and resume) a TRL trainer, check its loss, measure
memory.

SFT, GRPO and the Bradley-Terry baseline all run through :func:`run_trainer`, so a resumed
run, a non-finite loss and the peak memory are handled once.
"""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path
from typing import Any

from persrm_utils.errors import TrainingError

#: The adapter folder inside a stage's output folder.
ADAPTER = "adapter"
#: The trainer's log history, saved beside the adapter.
TRAIN_LOG = "train_log.json"
#: Logged values that must stay finite; a NaN here means the weights are NaN from then on.
WATCHED = ("loss", "grad_norm")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB): the figure the README tables report."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest ``checkpoint-N`` folder in ``output_dir``, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None


def check_finite(log_history: list[dict], learning_rate: float, output_dir: Path) -> None:
    """Refuse a training run whose loss or gradient norm became NaN or infinite.

    Transformers keeps training through a NaN (and by default logs the loss of such a step as
    the average of the earlier ones), so without this check a diverged run ends as "done" and its
    adapter, all NaN, is saved and judged. Raises before the adapter is written, so an adapter
    saved by an earlier, healthy run stays as it was.
    """
    for entry in log_history:
        for key in WATCHED:
            value = entry.get(key)
            if isinstance(value, int | float) and not math.isfinite(value):
                raise TrainingError(
                    f"training diverged: step {entry.get('step', '?')} logged {key} = {value}, "
                    "so the stage failed and no adapter was saved from it (one already in "
                    f"{output_dir / ADAPTER} is left as it was). The likely cause is a learning "
                    f"rate too high for this model (learning_rate = {learning_rate:g}); fp16 "
                    "overflow on a T4 is the other usual one.",
                    "lower sft_learning_rate (SFT) or grpo_learning_rate (GRPO), e.g. by 10x, "
                    f"delete the checkpoint-* folders in {output_dir} (they hold the diverged "
                    "weights), and run the stage again.",
                )


def run_trainer(trainer: Any, output_dir: Path, tokenizer: Any, resume: bool):
    """Train (resuming from the newest checkpoint when asked) and save the adapter on rank 0.

    Shared by SFT and GRPO: both save LoRA checkpoints into ``output_dir`` and the final adapter,
    with its tokenizer, into ``output_dir/adapter``. Returns (seconds, checkpoint resumed from).
    """
    checkpoint = last_checkpoint(output_dir) if resume else None
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    check_finite(trainer.state.log_history, trainer.args.learning_rate, output_dir)
    if trainer.is_world_process_zero():
        trainer.save_model(str(output_dir / ADAPTER))
        tokenizer.save_pretrained(str(output_dir / ADAPTER))
    return seconds, checkpoint
