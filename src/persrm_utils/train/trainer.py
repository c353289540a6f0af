"""What every trainer of the series shares: run (and resume) a TRL trainer, check its loss and its
weights, swap in the new adapter, measure memory.

SFT and GRPO run through :func:`run_trainer`, so a resumed run, a non-finite loss, absurd weights
and the peak memory are handled once.

A resume may only continue the *same* training: :func:`training_settings` lists what shapes the
weights (the trainer's arguments, the model and its LoRA, the training rows, the weights training
starts from), and its fingerprint is written beside the checkpoints (``training.json``) when a run
starts. The next start resumes from ``checkpoint-*`` only when the fingerprint matches; a changed
setting, other rows, a run that diverged, or ``resume=False`` start fresh. The finished adapter of
an earlier run stays in place until the new one is complete, and the adapter carries its own
``training.json``: the settings its weights were trained with.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from persrm_utils.errors import TrainingError
from persrm_utils.hardware import choose_dtype_name
from persrm_utils.profiles import Profile
from persrm_utils.run.runner import TRAIN_AGAIN_ENV
from persrm_utils.train.log_lines import use_log_lines

#: The adapter folder inside a stage's output folder.
ADAPTER = "adapter"
#: The trainer's log history, saved beside the adapter.
TRAIN_LOG = "train_log.json"
#: The settings a run trains with and their fingerprint: beside the checkpoints (the run in
#: progress) and inside the adapter folder (what its weights were trained with).
TRAINING_RECORD = "training.json"
#: Logged values that must stay finite; a NaN here means the weights are NaN from then on.
WATCHED = ("loss", "grad_norm")
#: The largest absolute value a trained LoRA weight may hold. Adam moves a weight by about the
#: learning rate per step, so even 1e-2 for 10,000 steps stays near 100; a learning rate of 1e6
#: on the tiny model reaches about 1e6 in three steps (measured) while its loss stays finite.
MAX_ADAPTER_WEIGHT = 1e3
#: Trainer arguments that only say where or how often to save, log or clean up: an interrupted
#: run may resume under other values of these. Every other argument is part of the fingerprint.
BOOKKEEPING = (
    "output_dir",
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "report_to",
    "disable_tqdm",
    "dataloader_num_workers",
    "torch_empty_cache_steps",
    "eval_accumulation_steps",
    "per_device_eval_batch_size",
)
#: Profile fields that decide the model being trained (the trainer's arguments hold the rest).
MODEL_SETTINGS = (
    "model_source",
    "model_name",
    "model_path",
    "load_in_4bit",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "max_seq_length",
    "seed",
)

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


def _json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, enums their values)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def rows_sha256(rows: list[dict]) -> str:
    """SHA-256 of the training rows, so other data never resumes a run's checkpoints."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def weights_sha256(model: Any) -> str:
    """SHA-256 of the trainable parameters: the weights training starts from.

    For GRPO these are the SFT adapter's, so a retrained SFT judge never resumes GRPO
    checkpoints made from the old one. A fresh LoRA is drawn after ``set_seed(profile.seed)``
    (:func:`~persrm_utils.models.loader.add_lora`), so its hash is the same in every process.
    """
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def training_settings(
    kind: str,
    profile: Profile,
    backend: str,
    config_values: dict[str, Any],
    rows: list[dict],
    model: Any,
) -> dict[str, Any]:
    """Everything that shapes the weights of one training run, as JSON (see the module doc)."""
    fields = profile.model_dump(mode="json")
    trainer = {k: v for k, v in config_values.items() if k not in BOOKKEEPING}
    return _json(
        {
            "kind": kind,
            "model": {k: fields[k] for k in MODEL_SETTINGS if k in fields},
            "backend": backend,
            "trainer": trainer,
            "rows": {"count": len(rows), "sha256": rows_sha256(rows)},
            "start_weights_sha256": weights_sha256(model),
        }
    )


def fingerprint(settings: dict[str, Any]) -> str:
    """A short, stable hash of :func:`training_settings`."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flat(item, f"{prefix}{key}.")
        return out
    return {prefix[:-1]: value}


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def changed_settings(old: dict[str, Any], new: dict[str, Any], limit: int = 6) -> str:
    """The settings that differ, as ``trainer.learning_rate 0.001 -> 0.005, ...``."""
    before, after = _flat(old), _flat(new)
    keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    parts = [f"{k} {_shown(before.get(k))} -> {_shown(after.get(k))}" for k in keys[:limit]]
    more = f", and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(parts) + more


def read_training_record(path: Path) -> dict[str, Any] | None:
    """A ``training.json``, or None when it is absent or unreadable (then nothing resumes)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "fingerprint" in record else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a run killed mid-write leaves the previous record, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def resume_decision(
    output_dir: Path, settings: dict[str, Any], resume: bool
) -> tuple[str | None, str | None]:
    """(checkpoint to resume from, why none is resumed) for a run about to start.

    Resumes only the newest checkpoint of a run whose recorded fingerprint matches ``settings``
    and which did not diverge. Checkpoints written before this record existed are not resumed:
    nothing says what they were trained with.
    """
    checkpoint = last_checkpoint(output_dir)
    if checkpoint is None:
        return None, None
    name = Path(checkpoint).name
    if not resume:
        return None, f"{name} is not resumed (asked to train again)"
    if os.environ.get(TRAIN_AGAIN_ENV) == "1":
        return None, f"{name} is not resumed (`persrm run --force` asked to train again)"
    earlier = read_training_record(output_dir / TRAINING_RECORD)
    if earlier is None:
        return None, f"no {TRAINING_RECORD} says which settings trained {name}"
    if earlier.get("status") == "diverged":
        return None, f"the run that wrote {name} diverged"
    if earlier["fingerprint"] != fingerprint(settings):
        changes = changed_settings(earlier.get("settings", {}), settings)
        return None, f"{name} was trained with other settings ({changes})"
    return checkpoint, None


def _clear_checkpoints(output_dir: Path) -> None:
    """Delete the checkpoints of a run that will not be resumed.

    Left in place they would be mixed with the new run's: the trainer's rotation
    (``save_total_limit``) and a later resume both pick the highest step number, whoever wrote it.
    The finished adapter, the product of that run, is not touched.
    """
    for folder in output_dir.glob("checkpoint-*"):
        if folder.is_dir():
            shutil.rmtree(folder)


def _recover_adapter(output_dir: Path) -> None:
    """Finish a swap that a kill interrupted between its two renames (see :func:`save_adapter`)."""
    new, final = output_dir / f".{ADAPTER}-new", output_dir / ADAPTER
    if not final.exists() and (new / TRAINING_RECORD).is_file():
        os.replace(new, final)


def check_finite(
    log_history: list[dict], learning_rate: float, output_dir: Path, kind: str = ""
) -> None:
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
                    _lower_the_rate(output_dir, kind),
                )


#: The profile field that sets each trainer's learning rate.
RATE_FIELDS = {"sft": "sft_learning_rate", "grpo": "grpo_learning_rate"}


def _lower_the_rate(output_dir: Path, kind: str = "") -> str:
    field = RATE_FIELDS.get(kind, "sft_learning_rate (SFT) or grpo_learning_rate (GRPO)")
    return (
        f"lower {field}, e.g. by 10x (--set {field.split()[0]}=...), and run the stage again: "
        "with another learning rate it starts fresh (the checkpoint-* folders in "
        f"{output_dir} hold the diverged weights and are never resumed)."
    )


def check_weights(model: Any, learning_rate: float, output_dir: Path, kind: str = "") -> None:
    """Refuse trained weights that are NaN, infinite, or larger than :data:`MAX_ADAPTER_WEIGHT`.

    A loss can stay finite while the weights run away (GRPO's clipped loss, or a small model at
    a learning rate of 1e6): such a judge then writes empty or random answers, yet the stage
    would end "done". Checks the trainable parameters, before anything is saved.
    """
    import torch

    worst_name, worst = "", 0.0
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        values = param.detach()
        if not bool(torch.isfinite(values).all()):
            worst_name, worst = name, math.inf
            break
        largest = float(values.abs().max()) if values.numel() else 0.0
        if largest > worst:
            worst_name, worst = name, largest
    if worst > MAX_ADAPTER_WEIGHT:
        what = "holds NaN or infinite values" if math.isinf(worst) else f"reached {worst:.3g}"
        raise TrainingError(
            f"training broke the adapter: adapter weight {worst_name} {what} (a healthy LoRA "
            f"weight stays far below {MAX_ADAPTER_WEIGHT:g}), so the stage failed and no adapter "
            f"was saved from it (one already in {output_dir / ADAPTER} is left as it was). The "
            f"likely cause is a learning rate far too high (learning_rate = {learning_rate:g}).",
            _lower_the_rate(output_dir, kind),
        )


def check_adapter(adapter_dir: Path) -> None:
    """Refuse a saved adapter whose weights are NaN, infinite or absurdly large.

    Called before a stage builds on an adapter (GRPO starts from SFT's): one saved by an older
    version of this package, or damaged on disk, would otherwise be trained on and judged.
    """
    import torch
    from safetensors.torch import load_file

    file = Path(adapter_dir) / "adapter_model.safetensors"
    if not file.is_file():
        return
    for name, tensor in sorted(load_file(str(file)).items()):
        finite = bool(torch.isfinite(tensor).all())
        largest = float(tensor.float().abs().max()) if finite and tensor.numel() else 0.0
        if not finite or largest > MAX_ADAPTER_WEIGHT:
            what = "holds NaN or infinite values" if not finite else f"reaches {largest:.3g}"
            raise TrainingError(
                f"{file}: adapter weight {name} {what}, so the adapter is broken and nothing "
                "is built on it.",
                "train that stage again at a lower learning rate (10x lower than before): "
                "`persrm sft --force --run NAME --set sft_learning_rate=...`, or notebook 03 "
                "with that value in OVERRIDES.",
            )


def save_adapter(trainer: Any, tokenizer: Any, output_dir: Path, record: dict[str, Any]) -> Path:
    """Save the adapter into a new folder, then swap it in for the old one.

    The earlier adapter is replaced only once the new one, with its tokenizer and its
    ``training.json``, is complete on disk: a kill while saving leaves the old adapter whole.
    """
    final = output_dir / ADAPTER
    new, old = output_dir / f".{ADAPTER}-new", output_dir / f".{ADAPTER}-old"
    for leftover in (new, old):
        shutil.rmtree(leftover, ignore_errors=True)
    trainer.save_model(str(new))
    tokenizer.save_pretrained(str(new))
    _write_json(new / TRAINING_RECORD, record)  # last: marks the new folder as complete
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def run_trainer(
    trainer: Any,
    output_dir: Path,
    tokenizer: Any,
    resume: bool,
    settings: dict[str, Any] | None = None,
):
    """Train (resuming only the same configuration), check the result, save the adapter on rank 0.

    Shared by SFT and GRPO: both save LoRA checkpoints into ``output_dir`` and the final adapter,
    with its tokenizer and ``training.json``, into ``output_dir/adapter``. ``settings`` is
    :func:`training_settings`; a checkpoint is resumed only when ``resume`` and the run that
    wrote it had the same fingerprint (:func:`resume_decision`). Returns (seconds, checkpoint
    resumed from).
    """
    settings = settings or {}
    main = trainer.is_world_process_zero()
    if main:
        _recover_adapter(output_dir)
    checkpoint, reason = resume_decision(output_dir, settings, resume)
    # Every rank has decided before rank 0 clears old checkpoints or rewrites the record.
    trainer.accelerator.wait_for_everyone()
    record = {
        "fingerprint": fingerprint(settings),
        "settings": settings,
        "status": "training",
        "resumed_from": Path(checkpoint).name if checkpoint else None,
    }
    if main:
        if reason:
            print(
                f"starting fresh in {output_dir}: {reason}. Its checkpoints are removed; the "
                f"adapter in {output_dir / ADAPTER} stays until the new one is complete."
            )
            _clear_checkpoints(output_dir)
        _write_json(output_dir / TRAINING_RECORD, record)
    trainer.accelerator.wait_for_everyone()
    use_log_lines(trainer)  # one short line per logged step, not the raw log dictionaries
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    try:
        kind = str(settings.get("kind", ""))
        check_finite(trainer.state.log_history, trainer.args.learning_rate, output_dir, kind)
        check_weights(trainer.model, trainer.args.learning_rate, output_dir, kind)
    except TrainingError:
        if main:
            _write_json(output_dir / TRAINING_RECORD, record | {"status": "diverged"})
        raise
    if main:
        done = record | {"status": "complete", "steps": trainer.state.global_step}
        save_adapter(trainer, tokenizer, output_dir, done)
        _write_json(output_dir / TRAINING_RECORD, done)
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
