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
from persrm_utils.hardware import choose_dtype_name
from persrm_utils.profiles import Profile
from persrm_utils.train.log_lines import use_log_lines

#: The adapter folder inside a stage's output folder.
ADAPTER = "adapter"
#: The trainer's log history, saved beside the adapter.
TRAIN_LOG = "train_log.json"
#: Logged values that must stay finite; a NaN here means the weights are NaN from then on.
WATCHED = ("loss", "grad_norm")

#: Config fields whose *unset* default Unsloth's generated configs change (unsloth 2026.10.9,
#: ``unsloth/models/rl.py``: common fields at 3310-3346, GRPO at 3351-3370 and 3517-3576, SFT at
#: 3374-3380), against TRL 1.14.2 and transformers 5.17. Unsloth rewrites only the defaults of
#: fields that are not passed, so the config builders pass every one of these: the same profile
#: then trains the same recipe with and without Unsloth. (Unsloth also adds a ``max_seq_length``
#: field that TRL's configs do not have; the model's own limit is used on both paths.)
UNSLOTH_CHANGED_DEFAULTS: dict[str, tuple[str, ...]] = {
    "all": (
        "per_device_train_batch_size",  # TRL 8, Unsloth 4
        "gradient_accumulation_steps",  # 1 -> 2
        "learning_rate",  # 1e-6 (GRPO) / 2e-5 (SFT) / 1e-4 (reward) -> 5e-5
        "weight_decay",  # 0.0 -> 0.001
        "warmup_steps",  # 0 -> 0.1 (a 10 % ratio under transformers 5)
        "seed",  # 42 -> 3407
        "optim",  # adamw_torch_fused -> adamw_8bit
        "logging_steps",  # 10 -> 1
        "logging_nan_inf_filter",  # True -> False
        "per_device_eval_batch_size",  # 8 -> 4
        "eval_accumulation_steps",  # None -> 2
        "torch_empty_cache_steps",  # None -> 250
        "bf16",  # Unsloth resolves unset bf16/fp16 from the GPU in its trainer
        "fp16",
    ),
    "sft": (
        "loss_type",  # None (TRL resolves it to "chunked_nll") -> "nll"
        "padding_free",  # False -> None (may switch padding-free batching on)
    ),
    "grpo": (
        "epsilon_high",  # None (= epsilon, 0.2) -> 0.28 when loss_type="dapo" is passed
        "mask_truncated_completions",  # False -> True when loss_type="dapo" is passed
        "beta",  # 0.0 -> 0.001 unless the loss is dapo/dr_grpo
        "loss_type",
        "generation_kwargs",  # None -> {}
        "top_k",  # 0 -> -1 with vLLM
        "vllm_importance_sampling_correction",  # True -> False
    ),
    "reward": (),
}


def keep_trainable_fp32(model: Any) -> int:
    """Cast trainable parameters that TRL turned into bfloat16 back to float32; returns how many.

    TRL 1.14.2's ``SFTTrainer``, ``GRPOTrainer`` and ``RewardTrainer`` (``sft_trainer.py:1166``,
    ``grpo_trainer.py:520``, ``reward_trainer.py:535``) cast every trainable parameter to bfloat16
    whenever the model has ``is_loaded_in_4bit`` (or 8-bit) set, whatever ``bf16``/``fp16`` say.
    With ``fp16=True`` (a T4 without Unsloth) the GradScaler then cannot unscale the gradients:
    "_amp_foreach_non_finite_check_and_unscale_cuda" not implemented for 'BFloat16'. On a CPU
    the adapters silently train in bf16. float32 adapters are what PEFT creates and what Unsloth
    keeps (it removes that cast from its trainers). Safe after the trainer is built: the
    optimizer is only created in ``train()``, so it sees the float32 tensors.
    """
    import torch

    n = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            n += 1
    return n


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
    use_log_lines(trainer)  # one short line per logged step, not the raw log dictionaries
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    check_finite(trainer.state.log_history, trainer.args.learning_rate, output_dir)
    if trainer.is_world_process_zero():
        trainer.save_model(str(output_dir / ADAPTER))
        tokenizer.save_pretrained(str(output_dir / ADAPTER))
    return seconds, checkpoint


def device_values(profile: Profile, cuda: bool, capability: Any = None) -> dict[str, Any]:
    """The config fields every trainer of the series sets the same way: precision, device,
    optimizer, seeds and logging.

    bf16 only on compute capability >= 8 (a T4 only emulates it: fp16 there); on a CPU neither
    (TRL's configs refuse bf16 there). Gradient checkpointing trades compute for memory, which
    pays on a GPU and is pointless on a small CPU model. The 8-bit optimizer only where
    bitsandbytes' CUDA kernels are. Shared by SFT, GRPO and the Bradley-Terry baseline so the
    three cannot drift apart, and because Unsloth changes several of these defaults
    (:data:`UNSLOTH_CHANGED_DEFAULTS`), every one is passed explicitly.
    """
    dtype = choose_dtype_name(capability if cuda else None)
    return dict(
        bf16=dtype == "bfloat16",
        fp16=dtype == "float16",
        use_cpu=not cuda,
        gradient_checkpointing=cuda,
        optim="adamw_8bit" if cuda and profile.load_in_4bit else "adamw_torch",
        torch_empty_cache_steps=None,
        report_to="none",
        seed=profile.seed,
        data_seed=profile.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
