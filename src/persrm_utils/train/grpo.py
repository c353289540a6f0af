"""GRPO: reinforcement fine-tuning of the judge with verifiable rewards (TRL ``GRPOTrainer``).

For every prompt the policy samples a *group* of ``num_generations`` completions; each is scored
by the reward functions (:mod:`persrm_utils.train.rewards`); a completion's advantage is its reward
relative to its group's mean. No value model, no learned reward model: the verdict is checked
against the known label, which is what makes the reward *verifiable* and cheap.

On CUDA with Unsloth installed, the model comes from Unsloth (4-bit, its fused kernels and
gradient checkpointing), which patches TRL's trainer on import; elsewhere plain TRL + PEFT.
Training starts from the SFT adapter and resumes from the last checkpoint after an interruption.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from persrm_utils.errors import ConfigError, DataError
from persrm_utils.generation.local import TransformersBackend
from persrm_utils.generation.requests import GenRequest, prompt_text
from persrm_utils.hardware import detect
from persrm_utils.judge.format import build_messages, label
from persrm_utils.models.loader import LoadedModel, add_lora, import_backend_first, load_model
from persrm_utils.profiles import Profile
from persrm_utils.records import Exemplar, Pair
from persrm_utils.train.rewards import group_signal
from persrm_utils.train.sft import ADAPTER
from persrm_utils.train.trainer import (
    TRAIN_LOG,
    device_values,
    keep_trainable_fp32,
    peak_rss_mb,
    run_trainer,
    training_settings,
)

#: What notebook 04 plots, as TRL names them in the log history.
CURVES = (
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "completions/mean_length",
    "completions/clipped_ratio",
    "kl",
)


def grpo_rows(
    pairs: list[Pair], by_id: dict[str, Exemplar], both_orders: bool = True, prefix: str = ""
) -> list:
    """Conversational prompts with their label (the letter of the real text).

    ``prefix`` (``profile.answer_prefix``) is the start of the answer the harness writes; it
    rides along as the ``answer_prefix`` column, which the sampler continues and the rewards
    read (TRL passes every column to the reward functions).
    """

    swaps = (False, True) if both_orders else (False,)
    extra = {"answer_prefix": prefix} if prefix else {}
    return [
        {"prompt": build_messages(p, by_id, swap=s), "label": label(p, s), "pair_id": p.pair_id}
        | extra
        for p in pairs
        for s in swaps
    ]


def prefilled_prompts(rows: list[dict], tokenizer: Any) -> list[dict]:
    """Rows with an ``answer_prefix`` get a text prompt: the chat template plus that prefix.

    TRL's GRPO applies the chat template with a fresh generation prompt to conversational
    prompts, so it cannot continue a started answer; a text prompt it tokenizes as it is.
    """

    out = []
    for row in rows:
        prefix = row.get("answer_prefix", "")
        if prefix and not isinstance(row["prompt"], str):
            row = row | {"prompt": prompt_text(tokenizer, row["prompt"], prefix)}
        out.append(row)
    return out


def prompt_tokens(tokenizer: Any, prompt: str | list[dict]) -> int:
    """Tokens of one GRPO prompt as the trainer feeds it: a text prompt as it is, a chat with
    the template and a generation prompt (what TRL applies to conversational rows)."""
    text = prompt if isinstance(prompt, str) else prompt_text(tokenizer, prompt)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_prompt_lengths(rows: list[dict], tokenizer: Any, profile: Profile) -> int:
    """Raise a :class:`ConfigError` naming the first row whose prompt plus
    ``max_completion_length`` does not fit in ``max_seq_length``; return the longest prompt.

    Why: the two backends disagree on such a row. Plain TRL generates and scores it whole;
    Unsloth (2026.10.9) cuts every forward to the model's ``max_seq_length`` on some of its GRPO
    paths and not on others (``unsloth/models/llama.py``; it enforces the cap for DPO, KTO and
    ORPO, "a longer row crashes the logps gather", but not for GRPO), so the same profile could
    train differently, or crash, only on the GPU. The first GPU check's stand-in rows were 6
    tokens over (2054 of 2048) when its Unsloth GRPO step died with a device-side assert.
    """
    room = profile.max_seq_length - profile.max_completion_length
    longest = 0
    for i, row in enumerate(rows):
        n = prompt_tokens(tokenizer, row["prompt"])
        longest = max(longest, n)
        if n > room:
            which = row.get("pair_id", f"row {i}")
            raise ConfigError(
                f"GRPO prompt {which} is {n} tokens; with max_completion_length "
                f"{profile.max_completion_length} it needs {n + profile.max_completion_length}, "
                f"more than max_seq_length {profile.max_seq_length} (profile '{profile.name}')",
                "show fewer or shorter exemplars (max_exemplars, max_output_words), lower "
                "max_completion_length, or raise max_seq_length if memory allows.",
            )
    return longest


def grpo_config_values(
    profile: Profile, output_dir: Path, cuda: bool, capability=None, **overrides
) -> dict[str, Any]:
    """The ``GRPOConfig`` arguments for a profile; the memory knobs are commented for learners.

    Every field whose default Unsloth changes
    (:data:`~persrm_utils.train.trainer.UNSLOTH_CHANGED_DEFAULTS`) is passed, so the recipe is
    the same with and without Unsloth.
    """
    steps = profile.grpo_max_steps
    values: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=steps,
        learning_rate=profile.grpo_learning_rate,
        weight_decay=0.0,
        lr_scheduler_type="linear",
        warmup_steps=0,
        # Completions per device and micro-step; their product with the accumulation steps (the
        # generation batch) must be a multiple of num_generations (checked by the profile).
        # Out of memory: halve this and double grpo_grad_accum.
        per_device_train_batch_size=profile.grpo_batch_size,
        per_device_eval_batch_size=profile.grpo_batch_size,
        gradient_accumulation_steps=profile.grpo_grad_accum,
        eval_accumulation_steps=None,
        num_generations=profile.grpo_num_generations,  # group size G
        max_completion_length=profile.max_completion_length,  # lower if out of memory
        temperature=1.0,  # sampling diversity inside a group is what creates a signal
        top_k=0,  # plain temperature sampling
        generation_kwargs={},
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        # KL penalty to the reference, which is the *base* model (adapters switched off) on both
        # paths: train_grpo removes the frozen copy of the starting adapter that plain TRL would
        # use, because Unsloth never makes one. beta = 0 skips that extra forward pass; every
        # profile uses 0 (notebook 04, "the KL term").
        beta=profile.grpo_beta,
        # How per-token losses are averaged (notebook 04, section 1b): "dapo" sums over every
        # token of the batch and divides by their number, so each token weighs the same whatever
        # the length of its completion. The original "grpo" averages per completion first, which
        # favours short right answers and long wrong ones (Dr. GRPO's length bias). TRL 1.14's
        # default, set here explicitly because it decides how reasoning length is trained.
        loss_type="dapo",
        # PPO clipping of the ratio to [1 - 0.2, 1 + 0.2], symmetric: Unsloth would widen the
        # upper side to 0.28 (DAPO's clip-higher) because loss_type="dapo" is passed.
        epsilon=0.2,
        epsilon_high=0.2,
        # Advantages are (r - group mean) / (group std + 1e-4). Dr. GRPO argues for "none" (no
        # division: near-uniform groups otherwise get full-size advantages); which is better here
        # is not yet measured. TRL 1.14's default, set explicitly.
        scale_rewards="group",
        mask_truncated_completions=False,
        logging_steps=1,
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN, so check_finite sees it
        save_steps=max(1, steps // 3),
        save_total_limit=2,
        **device_values(profile, cuda, capability),
    )
    values.update(overrides)
    return values


def grpo_config(profile: Profile, output_dir: Path, cuda: bool, capability=None, **overrides):
    """The ``GRPOConfig`` of :func:`grpo_config_values`.

    Build it after :func:`~persrm_utils.models.loader.import_backend_first` (``train_grpo``
    does): ``trl.GRPOConfig`` is Unsloth's class only once unsloth has been imported.
    """
    from trl import GRPOConfig

    return GRPOConfig(**grpo_config_values(profile, output_dir, cuda, capability, **overrides))


def drop_reference_adapter(model: Any) -> bool:
    """Delete the frozen "ref" adapter plain TRL adds for the KL term; True if there was one.

    TRL 1.14.2 (``grpo_trainer.py:462-490``) gives a PeftModel with ``beta > 0`` a frozen copy
    of its starting adapter, named "ref", as the KL reference: the SFT judge. Unsloth removes
    that code and uses the base model with the adapters switched off (``unsloth/models/rl.py``).
    Without "ref", TRL falls back to exactly that (``use_adapter(model, None)`` disables the
    adapters), so both paths penalise the distance to the same base model, and
    ``save_model`` no longer writes the copy to ``adapter/ref/``.
    """
    if "ref" not in (getattr(model, "peft_config", None) or {}):
        return False
    model.delete_adapter("ref")
    return True


@dataclass
class GRPOResult:
    adapter_dir: str
    steps: int
    seconds: float
    resumed_from: str | None
    history: list[dict[str, float]] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    backend: str = ""

    def first_last(self, key: str = "reward") -> tuple[float | None, float | None]:
        values = [h[key] for h in self.history if key in h]
        return (values[0], values[-1]) if values else (None, None)


def load_policy(profile: Profile, sft_adapter: Path | None) -> LoadedModel:
    """The policy: the base model with the SFT adapter, trainable; or a fresh LoRA without one."""
    loaded = load_model(profile)
    if sft_adapter is None:
        add_lora(loaded, profile)
        return loaded
    if loaded.backend == "unsloth":
        # Unsloth wraps the model itself; attach the SFT weights to its LoRA layers.
        add_lora(loaded, profile)
        loaded.model.load_adapter(str(sft_adapter), adapter_name="default", is_trainable=True)
        return loaded
    from peft import PeftModel

    loaded.model = PeftModel.from_pretrained(loaded.model, str(sft_adapter), is_trainable=True)
    return loaded


def train_grpo(
    profile: Profile,
    rows: list[dict],
    output_dir: Path,
    reward_funcs: tuple,
    sft_adapter: Path | None = None,
    loaded: LoadedModel | None = None,
    resume: bool = True,
    callbacks: list | None = None,
    **config_overrides: Any,
) -> GRPOResult:
    """Run GRPO from the SFT adapter; save the new adapter and the metric history.

    Resumes from the newest checkpoint in ``output_dir`` when ``resume`` and that checkpoint was
    trained with the same settings, rows and starting adapter (else starts fresh, and says why);
    an earlier adapter is replaced only once the new one is complete
    (:mod:`persrm_utils.train.trainer`).
    With ``beta > 0`` the KL term pulls the policy towards the base model (adapters off), not
    towards the SFT judge, on both backends (:func:`drop_reference_adapter`).
    """
    hw = detect()
    import_backend_first(profile, hw)  # before trl is imported: unsloth patches its trainers
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    loaded = loaded or load_policy(profile, sft_adapter)
    output_dir.mkdir(parents=True, exist_ok=True)
    values = grpo_config_values(
        profile, output_dir, hw.cuda, hw.compute_capability, **config_overrides
    )
    data = prefilled_prompts(rows, loaded.tokenizer)
    check_prompt_lengths(data, loaded.tokenizer, profile)
    rewards = [getattr(fn, "__name__", type(fn).__name__) for fn in reward_funcs]
    settings = training_settings(
        "grpo", profile, loaded.backend, values | {"reward_funcs": rewards}, data, loaded.model
    )
    trainer = GRPOTrainer(
        model=loaded.model,
        reward_funcs=list(reward_funcs),
        args=GRPOConfig(**values),
        train_dataset=Dataset.from_list(data),
        processing_class=loaded.tokenizer,
        callbacks=callbacks,
    )
    keep_trainable_fp32(trainer.model)  # TRL made a 4-bit model's LoRA bf16: fp16 cannot scale it
    drop_reference_adapter(trainer.model)
    seconds, checkpoint = run_trainer(trainer, output_dir, loaded.tokenizer, resume, settings)
    adapter_dir = output_dir / ADAPTER
    history = [
        {k: float(v) for k, v in e.items() if isinstance(v, int | float)}
        for e in trainer.state.log_history
        if "reward" in e
    ]
    result = GRPOResult(
        adapter_dir=str(adapter_dir),
        steps=trainer.state.global_step,
        seconds=seconds,
        resumed_from=checkpoint,
        history=history,
        peak_rss_mb=peak_rss_mb(),
        backend=loaded.backend,
    )
    if trainer.is_world_process_zero():
        (output_dir / TRAIN_LOG).write_text(json.dumps(asdict(result), indent=2))
    return result


def sample_groups(
    loaded: LoadedModel, rows: list[dict], group_size: int, max_new_tokens: int, seed: int = 0
) -> list[str]:
    """``group_size`` sampled completions per prompt (temperature 1), for the pre-flight check."""

    backend = TransformersBackend(
        loaded.model, loaded.tokenizer, batch_size=group_size, model_name=f"preflight-{seed}"
    )
    requests = [
        GenRequest(
            row["prompt"],
            max_new_tokens,
            temperature=1.0,
            seed=seed * 1000 + j,
            prefix=row.get("answer_prefix", ""),
        )
        for row in rows
        for j in range(group_size)
    ]
    return [r.text for r in backend.generate(requests)]


@dataclass
class Preflight:
    """What sampling groups from the starting policy showed, before any GRPO step.

    ``kept`` are the pairs with reward variance in the group of at least one of their two A/B
    orders, both orders kept: only a group with variance produces a gradient (GRPO's advantage
    is zero across a uniform group). Training on them alone is DAPO's *dynamic sampling*, done
    once up front instead of at every step; on a CPU budget of tens of steps it is the
    difference between learning and idling. Keeping the other order too makes the kept prompts
    exactly label-balanced, so no letter earns more reward than the other on average; an
    order whose group is uniform costs a forward pass and gives no gradient. It removes a bias,
    not every collapse: run cpu-e kept only the varied orders (4 right at A, 2 at B) and still
    collapsed onto B within two updates, after which every group was uniform and no gradient
    could undo it.
    """

    checked: int
    kept: list[dict]
    signal: dict[str, float]
    group_rewards: list[list[float]]
    #: The sampled completions of each group, and the right answer of each prompt: what GRPO
    #: compares (the notebook shows a few groups beside their rewards).
    group_texts: list[list[str]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    #: How many checked prompts had reward variance in their own group (``kept`` adds the
    #: other A/B order of each of their pairs).
    varied: int = 0

    @property
    def kept_share(self) -> float:
        return len(self.kept) / self.checked if self.checked else 0.0

    def groups_table(self, n: int = 4) -> list[dict[str, Any]]:
        """The first ``n`` groups as rows: right answer, each completion with its reward, kept.

        Completions are shown after the harness's prefix (on a verdict-only profile, the one
        letter the judge wrote) and cut to 60 characters.
        """
        rows = []
        for i, (texts, rewards) in enumerate(
            zip(self.group_texts, self.group_rewards, strict=False)
        ):
            if i >= n:
                break
            shown = [f"{t.strip()[:60]!r} -> {r:+.2f}" for t, r in zip(texts, rewards, strict=True)]
            rows.append({"right answer": self.labels[i] if i < len(self.labels) else "?",
                         "completions -> reward": " | ".join(shown),
                         "kept": statistics.pstdev(rewards) > 0})  # fmt: skip
        return rows


def preflight(
    loaded: LoadedModel,
    rows: list[dict],
    group_size: int,
    max_new_tokens: int,
    reward_funcs: tuple,
    n_prompts: int,
    seed: int = 0,
) -> Preflight:
    """Sample a group for ``n_prompts`` rows and keep the pairs with reward variance.

    Rows are taken a whole pair at a time (both A/B orders, in a seeded-random order of pairs),
    so the check sees the real text in both positions. A pair is kept, in both orders, when the
    group of either order varies: the kept prompts are then exactly label-balanced (as many
    with the right text at A as at B), so no letter can earn more reward than the other.

    Raises :class:`~persrm_utils.errors.DataError` with what to change when no group varies:
    GRPO would then spend its whole budget on zero gradients.
    """

    def pair_key(i: int, row: dict) -> str:  # a row without a pair id is a pair of its own
        return f"pair:{row['pair_id']}" if row.get("pair_id") is not None else f"row:{i}"

    by_pair: dict[str, list[dict]] = {}
    for i, row in enumerate(rows):
        by_pair.setdefault(pair_key(i, row), []).append(row)
    pair_ids = sorted(by_pair)
    random.Random(seed).shuffle(pair_ids)
    picked: list[dict] = []
    picked_pair: list[str] = []  # the pair of each picked row
    for pid in pair_ids:  # whole pairs, so both A/B orders of a pair are checked together
        if len(picked) >= n_prompts:
            break
        picked += by_pair[pid]
        picked_pair += [pid] * len(by_pair[pid])
    picked, picked_pair = picked[:n_prompts], picked_pair[:n_prompts]
    texts = sample_groups(loaded, picked, group_size, max_new_tokens, seed=seed)
    labels = [row["label"] for row in picked for _ in range(group_size)]
    prefixes = [row.get("answer_prefix", "") for row in picked for _ in range(group_size)]
    parts = [fn(texts, label=labels, answer_prefix=prefixes) for fn in reward_funcs]
    totals = [sum(vals) for vals in zip(*parts, strict=True)]
    groups = [totals[i : i + group_size] for i in range(0, len(totals), group_size)]
    varied = [pid for pid, g in zip(picked_pair, groups, strict=True) if statistics.pstdev(g) > 0]
    # both orders of every pair with a varied group, also an order that n_prompts left unsampled
    kept = [row for pid in dict.fromkeys(varied) for row in by_pair[pid]]
    signal = group_signal(totals, group_size)
    if not kept:
        raise DataError(
            f"every one of the {len(picked)} sampled groups has the same reward for all "
            f"{group_size} completions (mean reward {signal['mean_reward']:.2f}), so GRPO's "
            "advantages, loss and gradients would all be zero",
            "when the mean reward is near -1 the judge is always wrong or never valid: train SFT "
            "longer first; near +1 it is always right on these pairs: use harder pairs or more "
            "prompts (grpo_preflight_prompts); in both cases a larger group "
            "(grpo_num_generations) or a higher temperature gives variance a better chance.",
        )
    group_texts = [texts[i : i + group_size] for i in range(0, len(texts), group_size)]
    labels_checked = [r["label"] for r in picked]
    return Preflight(len(picked), kept, signal, groups, group_texts, labels_checked, len(varied))
