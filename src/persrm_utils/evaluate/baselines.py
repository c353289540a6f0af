"""Baselines on the same pairs: what a reasoning reward model has to beat (docs/design.md §8).

Each baseline answers every pair in **both** A/B orders and returns
:class:`~persrm_utils.judge.judging.Judgement` objects, so :mod:`persrm_utils.evaluate.metrics`
scores it exactly like the LLM judges:

* :func:`random_baseline`: a seeded coin. Its accuracy is the floor (50%), and its swap
  consistency (about 50%) shows what "no preference at all" looks like.
* :func:`stylometric_baseline`: the classic of authorship attribution. A character n-gram
  TF-IDF profile of the author's exemplars; the response more similar to it (cosine) is the
  verdict. No training, no GPU, and surprisingly strong on easy negatives.
* :func:`visible_cue_baseline`: the four visible cues the short reasoning writes (numbers,
  quotes, exclamations, sentence length), counted against the exemplars: how much of the
  answer that reasoning can read off the texts before any model is trained.
* :func:`bt_rows` / :func:`train_bt` / :func:`bt_baseline`: a scalar Bradley-Terry reward model
  trained with TRL's ``RewardTrainer`` (exemplars in context), the standard non-reasoning reward
  model that PersRM-R1 proposes to replace with a reasoning judge: it outputs a number, not
  reasons. It is a strong baseline, not a straw man (in run ``cpu-b`` it beat the judge).

Ties (equal similarity or equal reward, e.g. a pair with no exemplars) are broken by a hash of
the two texts, never by position, so a tie cannot show up as a position bias and the same pair
gets the same verdict in both orders; over many ties this is a fair coin.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from persrm_utils.errors import PersRMError
from persrm_utils.hardware import choose_dtype_name, detect
from persrm_utils.judge.format import bt_context, label, responses, shown_exemplars
from persrm_utils.judge.judging import Judgement
from persrm_utils.models.loader import import_backend_first, resolve_source
from persrm_utils.profiles import Profile
from persrm_utils.records import Exemplar, Pair
from persrm_utils.train.log_lines import use_log_lines
from persrm_utils.train.traces import cue_matches
from persrm_utils.train.trainer import device_values, keep_trainable_fp32, peak_rss_mb

log = logging.getLogger(__name__)

#: Both orders, in the order judge_pairs(..., both_orders=True) uses.
SWAPS: tuple[bool, bool] = (False, True)


def _judgement(pair: Pair, swap: bool, letter: str, completion: str) -> Judgement:
    return Judgement(
        pair_id=pair.pair_id,
        negative_type=pair.negative_type,
        swap=swap,
        label=label(pair, swap),
        letter=letter,
        reason="ok",
        completion=completion,
    )


def _text_rank(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _pick(score_a: float, score_b: float, text_a: str, text_b: str) -> str:
    """The letter with the higher score; a tie goes to the text with the smaller hash.

    The tie-break depends on the texts, not on where they are shown, so it is the same text in
    both orders, and it carries no information about which text is the real one.
    """
    if score_a != score_b:
        return "A" if score_a > score_b else "B"
    return "A" if _text_rank(text_a) <= _text_rank(text_b) else "B"


def _both_orders(pair: Pair, score: Mapping[str, float], what: str, fmt: str) -> list[Judgement]:
    """A score-based baseline's two judgements of ``pair``: the higher-scored text wins.

    ``score`` maps each of the pair's two texts to its score, computed once: a text's score
    cannot depend on where it is shown, so the two orders pick the same text. The completion
    holds both scores (``f"{what} A=... B=..."``) and says when a tie was broken.
    """
    out = []
    for swap in SWAPS:
        a, b = responses(pair, swap)
        letter = _pick(score[a], score[b], a, b)
        completion = f"{what} A={score[a]:{fmt}} B={score[b]:{fmt}}"
        if score[a] == score[b]:
            completion += " (tie: broken by a hash of the texts)"
        out.append(_judgement(pair, swap, letter, completion))
    return out


# --------------------------------------------------------------------------------------------
# Random
# --------------------------------------------------------------------------------------------


def random_baseline(pairs: Sequence[Pair], seed: int = 0) -> list[Judgement]:
    """A fair coin per (pair, order), seeded by ``(seed, pair_id, order)``.

    Seeding each coin by the pair rather than drawing from one stream makes a pair's verdict
    independent of which other pairs are judged and in what order: a subset of the test set
    gets the same coins as the whole.
    """
    out = []
    for pair in pairs:
        for swap in SWAPS:
            coin = random.Random(f"{seed}:{pair.pair_id}:{int(swap)}").random()
            letter = "A" if coin < 0.5 else "B"
            out.append(_judgement(pair, swap, letter, f"coin: {letter}"))
    return out


# --------------------------------------------------------------------------------------------
# Stylometric: character n-gram TF-IDF + cosine
# --------------------------------------------------------------------------------------------


def _orders(n: int | Sequence[int]) -> tuple[int, ...]:
    orders = (n,) if isinstance(n, int) else tuple(n)
    if not orders or any(not isinstance(k, int) or k < 1 for k in orders):
        raise PersRMError(
            f"n={n!r}", "use a positive n-gram length, e.g. 3, or several: (2, 3, 4)."
        )
    return orders


def char_ngrams(text: str, n: int | Sequence[int] = 3) -> Counter[str]:
    """Counts of the character n-grams of ``text`` (whitespace runs collapsed to one space).

    Case and punctuation are kept on purpose: capitals, commas and dashes are exactly the habits
    character n-grams are good at catching. Whitespace is normalised because line breaks in the
    corpus files are layout, not style.
    """
    norm = " ".join(text.split())
    counts: Counter[str] = Counter()
    for k in _orders(n):
        counts.update(norm[i : i + k] for i in range(len(norm) - k + 1))
    return counts


@dataclass(frozen=True)
class TfidfModel:
    """Document frequencies of character n-grams over a reference pool of texts.

    idf(g) = ln((1 + N) / (1 + df(g))) + 1 (the smoothed form scikit-learn uses), so an n-gram
    that never occurs in the pool gets the largest weight and none gets zero or a division by
    zero. Term frequency is sublinear (1 + ln tf): a long text that repeats "the " 40 times
    should not be dominated by it.
    """

    n: tuple[int, ...]
    n_docs: int
    df: Mapping[str, int]

    @classmethod
    def fit(cls, texts: Iterable[str], n: int | Sequence[int] = 3) -> TfidfModel:
        orders = _orders(n)
        df: Counter[str] = Counter()
        n_docs = 0
        for text in texts:
            df.update(set(char_ngrams(text, orders)))
            n_docs += 1
        return cls(n=orders, n_docs=n_docs, df=dict(df))

    def idf(self, gram: str) -> float:
        return math.log((1 + self.n_docs) / (1 + self.df.get(gram, 0))) + 1.0

    def vector(self, text: str) -> dict[str, float]:
        """The L2-normalised TF-IDF vector of ``text`` (a sparse dict; empty for empty text)."""
        weights = {
            g: (1.0 + math.log(c)) * self.idf(g) for g, c in char_ngrams(text, self.n).items()
        }
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {g: w / norm for g, w in weights.items()} if norm else {}


def cosine(u: Mapping[str, float], v: Mapping[str, float]) -> float:
    """Cosine similarity of two L2-normalised sparse vectors (0 when either is empty)."""
    if len(u) > len(v):
        u, v = v, u
    return sum(w * v.get(g, 0.0) for g, w in u.items())


def similarity(model: TfidfModel, profile: Mapping[str, float], text: str) -> float:
    """Cosine of ``text``'s TF-IDF vector with an author ``profile`` (a vector of the same model).

    Rounded to 12 digits: summation-order noise must not decide between equally similar texts.
    """
    return round(cosine(profile, model.vector(text)), 12)


def stylometric_baseline(
    pairs: Sequence[Pair],
    by_id: Mapping[str, Exemplar],
    n: int | Sequence[int] = 3,
    k: int | None = None,
    idf_texts: Iterable[str] | None = None,
) -> list[Judgement]:
    """Character n-gram TF-IDF of the shown exemplars vs each response; the closer one wins.

    The author's profile is the TF-IDF vector of their shown exemplars' outputs joined into one
    document (outputs, because the responses are continuations too: compare like with like).
    ``k`` limits the exemplars as in :func:`~persrm_utils.judge.format.build_messages`.

    The IDF is fitted once, on the outputs of every exemplar in ``by_id`` (the exemplar pool),
    unless ``idf_texts`` is given. Why there: IDF is what makes an author's *distinctive*
    n-grams count more than ones everybody uses, so it must be measured on many authors' real
    writing; and it must never see the candidate responses, or the negatives of the test set
    would shape the weights that judge them (the model would be fitted on its own exam). The
    pool can hold the real texts of some pairs (they are exemplars of other pairs), which is
    what a deployed system also has: the user's writing history. One text among hundreds moves
    document frequencies very little.

    The completion holds both similarities, e.g. ``"cosine A=0.412 B=0.388"``. Both orders get
    the same similarities, so the baseline is swap-consistent by construction.
    """
    texts = (ex.output for ex in by_id.values()) if idf_texts is None else idf_texts
    model = TfidfModel.fit(texts, n)
    profiles: dict[tuple[str, ...], dict[str, float]] = {}
    out = []
    for pair in pairs:
        shown = shown_exemplars(pair, by_id, k)
        key = tuple(ex.text_id for ex in shown)
        if key not in profiles:
            profiles[key] = model.vector("\n".join(ex.output for ex in shown))
        profile = profiles[key]
        score = {text: similarity(model, profile, text) for text in (pair.chosen, pair.rejected)}
        out += _both_orders(pair, score, "cosine", ".3f")
    return out


# --------------------------------------------------------------------------------------------
# Visible cues: what the short reasoning's cues alone decide
# --------------------------------------------------------------------------------------------


def visible_cue_baseline(
    pairs: Sequence[Pair], by_id: Mapping[str, Exemplar], k: int | None = None
) -> list[Judgement]:
    """The verdict the short trace's cues give: the response matching more exemplar cues wins.

    ``reasoning="short"`` teaches the judge to write four visible cues (numbers, quotes,
    exclamations, sentence length) of the exemplars, A and B, and to weigh them. Before paying
    for that reasoning (every cue token is a sequential forward pass), this baseline measures
    how much of the answer the cues carry on the same pairs: if it is near 0.5, the trace can
    teach the judge to write, not to decide. Ties are broken by a hash of the texts, as in
    every baseline here; the completion holds both counts, e.g. ``"cues A=3 B=2"``.
    """
    out = []
    for pair in pairs:
        shown = shown_exemplars(pair, by_id, k)
        texts = (pair.chosen, pair.rejected)
        score = {text: cue_matches(shown, text) if shown else 0 for text in texts}
        out += _both_orders(pair, score, "cues", "d")
    return out


# --------------------------------------------------------------------------------------------
# Bradley-Terry reward model (TRL RewardTrainer)
# --------------------------------------------------------------------------------------------


def bt_prompt(
    pair: Pair, by_id: Mapping[str, Exemplar], k: int | None = None
) -> list[dict[str, str]]:
    """The reward model's context: system prompt, then exemplars and the opening as the user turn.

    Laid out like the judge's prompt (same exemplar blocks), minus the two responses: a scalar
    reward model scores one response at a time, and the response is the assistant turn.
    """
    return bt_context(pair.prompt, shown_exemplars(pair, by_id, k))


def bt_rows(
    pairs: Sequence[Pair], by_id: Mapping[str, Exemplar], k: int | None = None
) -> list[dict[str, Any]]:
    """Conversational preference rows for ``RewardTrainer``: prompt, chosen and rejected turns.

    ``{"prompt": [system, user], "chosen": [assistant: the real text],
    "rejected": [assistant: the negative]}``: TRL joins prompt + chosen and prompt + rejected,
    applies the chat template and trains ``-log sigmoid(r(chosen) - r(rejected))``. A/B order
    does not exist here; the real text is always "chosen".
    """
    return [
        {
            "prompt": bt_prompt(pair, by_id, k),
            "chosen": [{"role": "assistant", "content": pair.chosen.strip()}],
            "rejected": [{"role": "assistant", "content": pair.rejected.strip()}],
        }
        for pair in pairs
    ]


def _chat_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a whole conversation, exactly as TRL's RewardTrainer tokenizes it."""
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    return list(ids)


def row_lengths(tokenizer: Any, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Per row, the longer of the tokenized prompt+chosen and prompt+rejected sequences.

    ``RewardTrainer`` drops a row when *either* side is longer than ``max_length``, silently
    (only a progress bar says "Filtering train >N tokens"); counting first lets us report it.
    """
    return [
        max(
            len(_chat_ids(tokenizer, [*row["prompt"], *row["chosen"]])),
            len(_chat_ids(tokenizer, [*row["prompt"], *row["rejected"]])),
        )
        for row in rows
    ]


@dataclass
class BTStats:
    """What :func:`train_bt` did: data kept and dropped, time, loss and memory."""

    examples: int
    kept: int
    dropped: int
    max_length: int
    longest_tokens: int
    mode: str  # "lora" or "full"
    trainable_params: int
    steps: int = 0
    seconds: float = 0.0
    seconds_per_step: float = 0.0
    losses: list[tuple[int, float]] = field(default_factory=list)
    train_accuracy: float | None = None  # RewardTrainer's last logged accuracy (chosen > rejected)
    peak_rss_mb: float = 0.0
    model_dir: str = ""

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1][1] if self.losses else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"final_loss": self.final_loss}


def _load_seqcls(profile: Profile, source: str, cuda: bool) -> tuple[Any, Any]:
    """The profile's model with a one-output score head, and its tokenizer (pad token set)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict[str, Any] = {"num_labels": 1}
    if cuda:
        hw = detect()
        dtype = choose_dtype_name(hw.compute_capability)
        kwargs["dtype"] = getattr(torch, dtype)
        kwargs["device_map"] = {"": 0}
        if profile.load_in_4bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=getattr(torch, dtype),
            )
    else:
        kwargs["dtype"] = torch.float32
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialized": expected, it is the head
    try:
        model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    # the score is read at the last non-pad token: without pad_token_id the model refuses batches
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def bt_lora_config(profile: Profile):
    """LoRA for a sequence-classification model: the profile's rank and modules, plus the head.

    ``modules_to_save=["score"]`` trains the new score head in full: it starts random, and a
    LoRA update of a random 1-output layer would be a waste of a head.
    """
    from peft import LoraConfig

    return LoraConfig(
        r=profile.lora_r,
        lora_alpha=profile.lora_alpha,
        lora_dropout=profile.lora_dropout,
        target_modules=list(profile.lora_target_modules),
        modules_to_save=["score"],
        bias="none",
        task_type="SEQ_CLS",
    )


def bt_config_values(
    profile: Profile,
    output_dir: Path,
    max_steps: int,
    max_length: int,
    cuda: bool,
    capability=None,
    **overrides: Any,
) -> dict[str, Any]:
    """The ``RewardConfig`` arguments of :func:`train_bt`.

    Every field whose default Unsloth changes
    (:data:`~persrm_utils.train.trainer.UNSLOTH_CHANGED_DEFAULTS`) is passed: once unsloth is
    imported (a profile that trains the judge with it), ``trl.RewardConfig`` is Unsloth's too.
    """
    values: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=max_steps,
        # sft_batch_size pairs per step, in micro-batches of half as many (each pair is two
        # sequences, chosen and rejected): as many sequences per pass as SFT, so the baseline
        # does not set the run's peak memory (run cpu-c: 7.9 GB with all pairs in one pass)
        per_device_train_batch_size=max(1, profile.sft_batch_size // 2),
        per_device_eval_batch_size=max(1, profile.sft_batch_size // 2),
        gradient_accumulation_steps=profile.sft_batch_size // max(1, profile.sft_batch_size // 2),
        eval_accumulation_steps=None,
        learning_rate=profile.sft_learning_rate,
        weight_decay=0.0,
        lr_scheduler_type="linear",
        warmup_steps=0,
        logging_steps=1,
        logging_nan_inf_filter=False,
        save_strategy="no",  # a baseline: trained in minutes, saved once at the end
        max_length=max_length,
        **device_values(profile, cuda, capability),
    )
    values.update(overrides)
    return values


def train_bt(
    profile: Profile,
    rows: Sequence[Mapping[str, Any]],
    output_dir: Path | str,
    max_steps: int,
    full: bool | None = None,
    **overrides: Any,
) -> tuple[Any, Any, BTStats]:
    """Train a Bradley-Terry reward model on :func:`bt_rows` with TRL's ``RewardTrainer``.

    Returns ``(model, tokenizer, stats)``. ``max_length`` (an override; by default the profile's
    ``max_seq_length``) is the longest sequence kept: rows longer than it are counted and
    dropped *here*, before training, so ``stats.dropped`` says how many (TRL would drop them
    silently), and a :class:`PersRMError` says what to do when nothing would be left.

    ``full``: fine-tune every weight instead of LoRA. By default LoRA everywhere, the tiny model
    included: the smoke profile exists to prove the mechanics of the path the real models take
    (LoRA + a fully trained score head), not to learn anything. ``full=True`` is there for the
    curious (on the tiny model it is as fast). Any other ``RewardConfig`` field can be overridden
    by name (``learning_rate=...``, ``per_device_train_batch_size=...``).

    Saves the model (adapter + head, or the full model) and tokenizer to ``output_dir/model`` and
    the stats to ``output_dir/bt_log.json``.
    """
    hw = detect()
    import_backend_first(profile, hw)  # before trl is imported: unsloth patches its trainers
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    if not rows:
        raise PersRMError("no rows to train the reward model on", "pass bt_rows(train_pairs, ...).")
    if full and profile.load_in_4bit:
        raise PersRMError(
            f"full=True cannot train profile '{profile.name}': its weights are loaded in 4-bit",
            "use LoRA (full=False), or override load_in_4bit=False if the model fits in memory.",
        )
    from transformers import set_seed

    source = resolve_source(profile)
    # the score head and the LoRA matrices are drawn from the global RNG before RewardTrainer
    # seeds it: seed here, or the same run twice gives two different reward models
    set_seed(profile.seed)
    model, tokenizer = _load_seqcls(profile, source, hw.cuda)

    max_length = int(overrides.pop("max_length", profile.max_seq_length))
    lengths = row_lengths(tokenizer, rows)
    keep = [row for row, n in zip(rows, lengths, strict=True) if n <= max_length]
    if not keep:
        raise PersRMError(
            f"all {len(rows)} reward-model examples are longer than max_length={max_length} "
            f"tokens (the shortest has {min(lengths)}), so RewardTrainer would train on nothing",
            f"raise max_length to at least {min(lengths)} (the longest has {max(lengths)}), "
            "or show fewer exemplars (k) or shorter texts (max_output_words).",
        )
    if len(keep) < len(rows):
        log.warning(
            "reward model: %d of %d examples are longer than max_length=%d tokens and are left "
            "out (the longest has %d); raise max_length to keep them.",
            len(rows) - len(keep),
            len(rows),
            max_length,
            max(lengths),
        )

    use_full = bool(full)
    if not use_full:
        from peft import get_peft_model, prepare_model_for_kbit_training

        if profile.load_in_4bit and hw.cuda:
            model = prepare_model_for_kbit_training(
                model, gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        model = get_peft_model(model, bt_lora_config(profile))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    values = bt_config_values(
        profile, output_dir, max_steps, max_length, hw.cuda, hw.compute_capability, **overrides
    )
    trainer = RewardTrainer(
        model=model,
        args=RewardConfig(**values),
        train_dataset=Dataset.from_list([dict(r) for r in keep]),
        processing_class=tokenizer,
    )
    keep_trainable_fp32(trainer.model)  # TRL made a 4-bit model's LoRA bf16: fp16 cannot scale it
    if len(trainer.train_dataset) != len(keep):  # our count and TRL's filter must agree
        raise PersRMError(
            f"RewardTrainer kept {len(trainer.train_dataset)} of {len(keep)} examples that fit "
            f"max_length={max_length}: its tokenization differs from row_lengths()",
            "report this as a bug in persrm_utils.evaluate.baselines (the TRL version may have "
            "changed).",
        )
    use_log_lines(trainer)  # one short line per logged step, not the raw log dictionaries
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    history = trainer.state.log_history
    losses = [(int(e["step"]), float(e["loss"])) for e in history if "loss" in e]
    accuracies = [float(e["accuracy"]) for e in history if "accuracy" in e]
    steps = trainer.state.global_step
    stats = BTStats(
        examples=len(rows),
        kept=len(keep),
        dropped=len(rows) - len(keep),
        max_length=max_length,
        longest_tokens=max(lengths),
        mode="full" if use_full else "lora",
        trainable_params=trainable,
        steps=steps,
        seconds=seconds,
        seconds_per_step=seconds / steps if steps else 0.0,
        losses=losses,
        train_accuracy=accuracies[-1] if accuracies else None,
        peak_rss_mb=peak_rss_mb(),
        model_dir=str(output_dir / "model"),
    )
    if trainer.is_world_process_zero():
        trainer.save_model(stats.model_dir)
        tokenizer.save_pretrained(stats.model_dir)
        (output_dir / "bt_log.json").write_text(json.dumps(stats.to_dict(), indent=2))
    model = trainer.model
    model.eval()
    return model, tokenizer, stats


def load_bt(profile: Profile, model_dir: Path | str) -> tuple[Any, Any]:
    """A reward model saved by :func:`train_bt`, ready to score (``model, tokenizer``).

    LoRA runs saved an adapter (with the score head inside it); ``full=True`` runs saved a whole
    model. Both are recognised by what the folder holds.
    """

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PersRMError(
            f"no reward model in {model_dir}",
            "run 05_evaluation first: it trains and saves the Bradley-Terry reward model.",
        )
    hw = detect()
    if (model_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        model, tokenizer = _load_seqcls(profile, resolve_source(profile), hw.cuda)
        model = PeftModel.from_pretrained(model, str(model_dir))
    else:
        model, tokenizer = _load_seqcls(profile, str(model_dir), hw.cuda)
    model.eval()
    return model, tokenizer


def bt_scores(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict[str, str]]],
    batch_size: int = 8,
) -> list[float]:
    """The scalar reward of each conversation (prompt + one assistant turn), batched.

    Padding side does not matter: the model reads its score at the last non-pad token.
    """
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[float] = []
    try:
        with torch.no_grad():
            for start in range(0, len(conversations), batch_size):
                chunk = conversations[start : start + batch_size]
                ids = [{"input_ids": _chat_ids(tokenizer, c)} for c in chunk]
                batch = tokenizer.pad(ids, return_tensors="pt").to(device)
                logits = model(**batch).logits
                out.extend(float(x) for x in logits.float().reshape(-1).tolist())
    finally:
        model.train(was_training)
    return out


def bt_baseline(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Pair],
    by_id: Mapping[str, Exemplar],
    batch_size: int = 8,
    k: int | None = None,
) -> list[Judgement]:
    """The reward model's verdict on every pair in both orders: the higher reward wins.

    Each response is scored on its own (prompt + that response), so the scores, and hence the
    verdicts, cannot depend on whether a text is shown as A or B: the baseline is
    position-independent by construction (swap consistency 1.0, position bias 0.5 on balanced
    pairs). Both orders are still reported, so it sits in the same tables as the LLM judges.
    The completion holds the two rewards, e.g. ``"score A=0.4120 B=-1.0304"``.
    """
    conversations = []
    for pair in pairs:
        prompt = bt_prompt(pair, by_id, k)
        for text in (pair.chosen, pair.rejected):
            conversations.append([*prompt, {"role": "assistant", "content": text.strip()}])
    scores = bt_scores(model, tokenizer, conversations, batch_size)
    out = []
    for i, pair in enumerate(pairs):
        reward = {pair.chosen: scores[2 * i], pair.rejected: scores[2 * i + 1]}
        for swap in SWAPS:
            a, b = responses(pair, swap)
            letter = _pick(reward[a], reward[b], a, b)
            out.append(_judgement(pair, swap, letter, f"score A={reward[a]:.4f} B={reward[b]:.4f}"))
    return out
