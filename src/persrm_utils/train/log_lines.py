"""One short line per logged training step, instead of the trainer's raw log dictionaries.

With ``disable_tqdm=True`` (every config of the series sets it: a progress bar saved in an
executed notebook shows only its first frame) transformers prints each log as a Python dict of
a dozen keys, ``{'loss': '6.235', 'grad_norm': '0.1223', 'learning_rate': '0', 'entropy': ...}``,
which buries the two numbers a learner watches. :func:`use_log_lines` swaps that printer for
:class:`LogLines`, which prints the step and the few values that say how training goes; every
value is still in ``trainer.state.log_history`` and in the stage's ``train_log.json``.
"""

from __future__ import annotations

from typing import Any

#: The logged values shown, in this order, with their short names; the rest stay in the log.
#: SFT logs loss and token accuracy; GRPO also its reward, KL to the base model, PPO clipping
#: (``clip_ratio/region_mean``) and truncation (``completions/clipped_ratio``); the
#: Bradley-Terry trainer its pairwise accuracy; evaluation its loss.
SHOWN: tuple[tuple[str, str], ...] = (
    ("loss", "loss"),
    ("eval_loss", "eval loss"),
    ("reward", "reward"),
    ("reward_std", "reward sd"),
    ("kl", "kl"),
    ("clip_ratio/region_mean", "clipped (PPO)"),
    ("completions/clipped_ratio", "truncated"),
    ("mean_token_accuracy", "token acc"),
    ("accuracy", "acc"),
    ("grad_norm", "grad norm"),
    ("learning_rate", "lr"),
)
#: The end-of-training summary the trainer logs once.
SUMMARY = ("train_runtime", "train_loss")


def _number(value: Any) -> str:
    """A float in 4 significant digits (scientific when very small, e.g. a learning rate)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_log(logs: dict[str, Any], step: int, max_steps: int) -> str:
    """The line for one log entry: ``step 3/17 · loss 6.231 · grad norm 0.1419 · lr 0.0009045``.

    The end-of-training entry becomes ``done: 17 steps in 41.2 s, mean loss 6.229``.
    """
    if "train_runtime" in logs:
        loss = logs.get("train_loss")
        mean = f", mean loss {_number(loss)}" if loss is not None else ""
        return f"done: {step} steps in {logs['train_runtime']:.1f} s{mean}"
    parts = [f"step {step}/{max_steps}" if max_steps else f"step {step}"]
    parts += [f"{short} {_number(logs[key])}" for key, short in SHOWN if key in logs]
    # a named held-out set (``eval_dataset={"trained_types": ...}``) logs eval_<name>_loss
    parts += [
        f"eval {key[5:-5].replace('_', ' ')} loss {_number(value)}"
        for key, value in logs.items()
        if key.startswith("eval_") and key.endswith("_loss") and key != "eval_loss"
    ]
    return " · ".join(parts)


def log_lines_callback() -> Any:
    """A ``TrainerCallback`` that prints :func:`format_log` lines (on the main process only).

    Built in a function because ``transformers`` is imported only when a trainer is made.
    """
    from transformers import TrainerCallback

    class LogLines(TrainerCallback):
        """Prints one :func:`format_log` line per log, in place of ``PrinterCallback``."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and state.is_local_process_zero:
                print(format_log(logs, state.global_step, state.max_steps), flush=True)

    return LogLines()


def use_log_lines(trainer: Any) -> None:
    """Swap the trainer's dictionary printer (and any text progress bar) for ``LogLines``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(log_lines_callback())
