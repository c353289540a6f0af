"""Supervised fine-tuning of the judge: TRL ``SFTTrainer``, LoRA (QLoRA on CUDA), resumable.

The judge learns to write ``<think>`` reasoning about personal factors, then its verdict. Only
the assistant's words are trained on (``assistant_only_loss``): the prompt with its exemplars is
long, and learning to reproduce it would waste most of the gradient on text the judge never has
to write. Checkpoints are saved every few steps, and :func:`train_sft` resumes from the last one,
so a Colab disconnect costs minutes, not the run.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from persrm_utils.errors import DataError
from persrm_utils.generation.requests import prompt_text
from persrm_utils.hardware import detect
from persrm_utils.models.loader import LoadedModel, add_lora, import_backend_first, load_model
from persrm_utils.profiles import Profile
from persrm_utils.tags import VERDICT_PREFIX, VERDICT_SUFFIX
from persrm_utils.train.trainer import (
    ADAPTER,
    TRAIN_LOG,
    device_values,
    keep_trainable_fp32,
    peak_rss_mb,
    run_trainer,
    training_settings,
)


def sft_steps(profile: Profile, n_rows: int, world_size: int = 1) -> int:
    """Optimizer steps for ``n_rows`` traces: ``sft_epochs`` passes when set, else the max steps.

    Epochs are the natural unit when the data size follows the corpus (a user's own texts, a
    bigger C50 slice): the same profile then neither stops half-way through the data nor
    repeats it ten times.
    """
    if profile.sft_epochs is None:
        return profile.sft_max_steps
    per_step = profile.sft_batch_size * profile.sft_grad_accum * max(1, world_size)
    return max(1, math.ceil(profile.sft_epochs * n_rows / per_step))


def sft_config_values(
    profile: Profile,
    output_dir: Path,
    cuda: bool,
    capability=None,
    n_rows: int | None = None,
    backend: str = "transformers",
    **overrides,
) -> dict[str, Any]:
    """The ``SFTConfig`` arguments for a profile; every field a learner may want to change is here.

    bf16 only on compute capability >= 8 (a T4 emulates it); on a CPU neither bf16 nor fp16
    (``SFTConfig`` refuses bf16 there). ``save_steps`` keeps three checkpoints' worth of progress
    at most a third of the run apart, so an interruption loses little. Every field whose default
    Unsloth changes (:data:`~persrm_utils.train.trainer.UNSLOTH_CHANGED_DEFAULTS`) is passed, so
    the recipe is the same on both paths. ``backend`` only picks how the same loss is computed.
    """

    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps = profile.sft_max_steps if n_rows is None else sft_steps(profile, n_rows, world)
    values: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=profile.sft_batch_size,  # lower first if out of memory
        per_device_eval_batch_size=profile.sft_batch_size,
        gradient_accumulation_steps=profile.sft_grad_accum,  # raise when lowering the batch
        eval_accumulation_steps=None,
        learning_rate=profile.sft_learning_rate,
        weight_decay=0.0,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 10),
        logging_steps=1,
        # Log a NaN loss as NaN (the default logs the mean of earlier steps instead), so
        # check_finite sees a diverged step in the loss itself.
        logging_nan_inf_filter=False,
        save_steps=max(1, steps // 3),
        save_total_limit=2,
        max_length=profile.max_seq_length,  # lower if out of memory (long exemplars)
        assistant_only_loss=True,
        packing=False,
        padding_free=False,
        # The same token-level NLL on both paths: TRL's "chunked_nll" projects only the trained
        # tokens through lm_head (less memory); Unsloth brings its own fused loss and uses "nll".
        loss_type="nll" if backend == "unsloth" else "chunked_nll",
        **device_values(profile, cuda, capability),
    )
    values.update(overrides)
    return values


def sft_config(
    profile: Profile,
    output_dir: Path,
    cuda: bool,
    capability=None,
    n_rows: int | None = None,
    backend: str = "transformers",
    **overrides,
):
    """The ``SFTConfig`` of :func:`sft_config_values`.

    Build it after :func:`~persrm_utils.models.loader.import_backend_first` (``train_sft`` does):
    ``trl.SFTConfig`` is Unsloth's class only once unsloth has been imported.
    """
    from trl import SFTConfig

    return SFTConfig(
        **sft_config_values(profile, output_dir, cuda, capability, n_rows, backend, **overrides)
    )


def prefilled_rows(rows: list[dict], tokenizer: Any, prefix: str) -> list[dict[str, list[int]]]:
    """Tokenized rows whose loss covers only what the judge itself writes after ``prefix``.

    With the verdict-only budget the harness writes the constant tags around the letter at
    inference (:func:`persrm_utils.judge.format.full_answer`), so training spends no gradient on
    them either: each row's loss is on the letter alone, the one token that carries the decision.
    (For any other prefix, the loss covers the rest of the answer and the end of turn.) Each row
    becomes ``input_ids`` and ``labels`` (-100 up to the prefix's end). Prompt and answer are
    tokenized apart, exactly as the judge's prompt is tokenized when it generates, so the token
    boundary at the letter is the same in training and at inference.
    """

    verdict_only = prefix == VERDICT_PREFIX
    end = "" if verdict_only else (tokenizer.eos_token or "")
    out = []
    for i, row in enumerate(rows):
        *context, answer = row["messages"]
        text = str(answer.get("content", ""))
        written = text[len(prefix) :]
        if verdict_only and written.endswith(VERDICT_SUFFIX):
            written = written[: -len(VERDICT_SUFFIX)]
        if answer.get("role") != "assistant" or not text.startswith(prefix) or not written:
            raise DataError(
                f"SFT row {i}: its last message is not an assistant answer starting with "
                f"{prefix!r} ({text[:40]!r})",
                "build rows with traces.to_sft_rows from traces written for this profile's "
                "reasoning budget (reasoning_traces(..., profile.reasoning)).",
            )
        prompt = prompt_text(tokenizer, context, prefix)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(written + end, add_special_tokens=False)["input_ids"]
        out.append(
            {"input_ids": prompt_ids + answer_ids, "labels": [-100] * len(prompt_ids) + answer_ids}
        )
    return out


@dataclass
class SFTResult:
    adapter_dir: str
    steps: int
    seconds: float
    resumed_from: str | None
    losses: list[tuple[int, float]] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    backend: str = ""
    examples: int = 0
    # validation loss by eval set name (e.g. "trained_types", "other_types"): (step, loss) pairs
    eval_losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    # every numeric value the trainer logged, per log entry (tokens seen, accuracy, grad norm)
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def start_loss(self) -> float | None:
        return self.losses[0][1] if self.losses else None

    @property
    def end_loss(self) -> float | None:
        return self.losses[-1][1] if self.losses else None


def train_sft(
    profile: Profile,
    rows: list[dict],
    output_dir: Path,
    loaded: LoadedModel | None = None,
    resume: bool = True,
    callbacks: list | None = None,
    eval_rows: dict[str, list[dict]] | None = None,
    **config_overrides: Any,
) -> SFTResult:
    """Train LoRA adapters on conversational rows ``{"messages": [system, user, assistant]}``.

    ``eval_rows`` are held-out rows by name (say the validation pairs of the trained types and
    of the other types): the same loss is measured on each at every third of the run, the last
    at the final step (on a CPU each held-out row costs about a second per measurement), so the
    training curve can be read against curves the judge never trained on. A training loss
    alone cannot tell learning from memorising.

    Resumes from the newest checkpoint in ``output_dir`` when ``resume`` and that checkpoint was
    trained with the same settings and rows (else starts fresh, and says why: see
    :mod:`persrm_utils.train.trainer`). Saves the adapter, its tokenizer and the settings it was
    trained with to ``output_dir/adapter``, replacing an earlier adapter only once the new one is
    complete, and the loss history to ``output_dir/train_log.json``.
    When the profile's answers start with a harness-written prefix (verdict-only judges), the
    loss covers only the rest of the answer (:func:`prefilled_rows`).
    """
    hw = detect()
    import_backend_first(profile, hw)  # before trl is imported: unsloth patches its trainers
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    loaded = loaded or load_model(profile)
    model = add_lora(loaded, profile)
    output_dir.mkdir(parents=True, exist_ok=True)
    prefix = profile.answer_prefix
    if prefix:
        config_overrides = {"assistant_only_loss": False} | config_overrides
    values = sft_config_values(
        profile,
        output_dir,
        hw.cuda,
        hw.compute_capability,
        n_rows=len(rows),
        backend=loaded.backend,
        **config_overrides,
    )
    held_out = {name: r for name, r in (eval_rows or {}).items() if r}
    if held_out:  # defaults, under anything the caller set
        # ceil, not floor: 38 steps // 3 measured at 12, 24, 36 and again at 38 (run cpu-e),
        # two points two steps apart; ceil gives 13, 26 and the end
        thirds = max(1, math.ceil(values["max_steps"] / 3))
        values = {"eval_strategy": "steps", "eval_steps": thirds} | values
    settings = training_settings("sft", profile, loaded.backend, values, rows, model)
    config = SFTConfig(**values)

    def tokenized(some: list[dict]) -> Any:
        return Dataset.from_list(prefilled_rows(some, loaded.tokenizer, prefix) if prefix else some)

    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=tokenized(rows),
        eval_dataset={name: tokenized(r) for name, r in held_out.items()} or None,
        processing_class=loaded.tokenizer,
        callbacks=callbacks,
    )
    keep_trainable_fp32(trainer.model)  # TRL made a 4-bit model's LoRA bf16: fp16 cannot scale it
    seconds, checkpoint = run_trainer(trainer, output_dir, loaded.tokenizer, resume, settings)
    adapter_dir = output_dir / ADAPTER
    history = trainer.state.log_history
    last = trainer.state.global_step
    evaluated = {e.get("step") for e in history if any(k.startswith("eval_") for k in e)}
    if held_out and last not in evaluated:
        trainer.evaluate()  # the end point of the validation curves
    losses = _logged(history, "loss")
    eval_losses = {name: _logged(history, f"eval_{name}_loss") for name in held_out}
    result = SFTResult(
        adapter_dir=str(adapter_dir),
        steps=trainer.state.global_step,
        seconds=seconds,
        resumed_from=checkpoint,
        losses=losses,
        peak_rss_mb=peak_rss_mb(),
        backend=loaded.backend,
        examples=len(rows),
        eval_losses=eval_losses,
        history=[
            {k: v for k, v in e.items() if isinstance(v, int | float) and not isinstance(v, bool)}
            for e in history
        ],
    )
    if trainer.is_world_process_zero():
        log = output_dir / TRAIN_LOG
        history = json.loads(log.read_text())["losses"] if checkpoint and log.exists() else []
        merged = {int(s): v for s, v in history} | dict(losses)
        payload = asdict(result) | {"losses": sorted(merged.items())}
        log.write_text(json.dumps(payload, indent=2))
    return result


def _logged(history: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) for every entry of a trainer's log history that has ``key``."""
    return [(int(e["step"]), float(e[key])) for e in history if key in e]


def adapter_tensor_norms(adapter_dir: Path) -> dict[str, float]:
    """L2 norm of every LoRA tensor in a saved adapter.

    LoRA's B matrices start at zero, so an adapter whose B norms are all zero never learned
    anything: a saved adapter that "behaves like the base model" is the commonest silent bug.
    """
    from safetensors.torch import load_file

    tensors = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    return {name: float(t.float().norm()) for name, t in tensors.items()}


def load_with_adapter(profile: Profile, adapter_dir: Path) -> LoadedModel:
    """The base model of ``profile`` with a saved LoRA adapter attached (for inference)."""
    from peft import PeftModel

    loaded = load_model(profile)
    loaded.model = PeftModel.from_pretrained(loaded.model, str(adapter_dir))
    loaded.model.eval()
    loaded.source = f"{loaded.source} + {adapter_dir}"
    return loaded
