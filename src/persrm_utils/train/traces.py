"""Reasoning traces for SFT: where each ``<think>`` comes from, and why it can be trusted.

SFT teaches the judge *how* to reason before GRPO teaches it to be right (docs/design.md §6).
A trace is one judge prompt plus one completion in the judge format
(:mod:`persrm_utils.judge.format`). Two writers make them, and every trace records which one did
(:attr:`Trace.source`):

* **a teacher LLM** (``"teacher:<backend>:<model>"``), through any generation backend. The
  teacher sees the same prompt as the judge plus an instruction to reason step by step about
  personal factors; it is *not* told the answer. Traces whose verdict is wrong or unreadable are
  rejected (rejection sampling, as in RM-R1), so SFT never imitates reasoning that led to the
  wrong answer.
* **a stylometric writer** (``"stylometric"``), offline and instant. It measures the same style
  features for the exemplars and both responses (:mod:`persrm_utils.data.stylometry`), cites the
  numbers where A and B differ most, and gives the verdict those numbers support. It is honest
  by construction: the verdict is computed from the cited numbers, never copied from the label,
  and when it disagrees with the label (or the cited numbers point both ways) there is no trace.
  A tiny model trained on these learns a grounded habit ("compare measurable factors, then
  decide") instead of a story that happens to end in the right letter.

Neither writer ever says which response is the author's real text or how the other was made:
the judge must learn to decide from style, not from being told.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from persrm_utils.data.stylometry import FUNCTION_WORDS, feature_names, feature_scale, feature_table
from persrm_utils.data.stylometry import text_features as _text_features
from persrm_utils.data.textsplit import sentences
from persrm_utils.errors import DataError
from persrm_utils.generation.requests import GenRequest, GenResult
from persrm_utils.judge import format as judge
from persrm_utils.records import Exemplar, Pair

Letter = Literal["A", "B"]
STYLOMETRIC = "stylometric"
#: The other offline writers' sources (see :func:`reasoning_traces`).
OFFLINE_SOURCES: tuple[str, ...] = ("short-reasoning", "verdict-only")


class Trace(BaseModel):
    """One SFT example: the judge prompt, a completion in the judge format, and its origin.

    ``swap`` says whether A and B were exchanged relative to the pair's stored order (each pair is
    usually traced in both orders). ``verdict`` is the letter the completion ends with, which is
    always the true label: traces with any other verdict are rejected before they get here.
    """

    model_config = ConfigDict(extra="forbid")

    pair_id: str
    swap: bool
    messages: list[dict[str, str]] = Field(min_length=2)
    completion: str
    verdict: Letter
    source: str
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value in (STYLOMETRIC, *OFFLINE_SOURCES):
            return value
        parts = value.split(":", 2)
        if len(parts) == 3 and parts[0] == "teacher" and parts[1] and parts[2]:
            return value
        raise ValueError(
            "source must be 'stylometric', 'short-reasoning', 'verdict-only' or "
            f"'teacher:<backend>:<model>', got {value!r}"
        )


# ----------------------------------------------------------------------------------------------
# Readable names for the style features
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactorName:
    """How one feature is cited: the personal factor it measures and the unit of its number.

    ``mult`` rescales the stored value for reading (a 0.71 type-token ratio reads better as 71
    distinct words per 100); ``digits`` is the precision the number is shown with.
    """

    factor: str
    unit: str
    mult: float = 1.0
    digits: int = 1


_PUNCT_UNITS = {
    "comma": ("Punctuation", "commas"),
    "semicolon": ("Punctuation", "semicolons"),
    "colon": ("Punctuation", "colons"),
    "dash": ("Punctuation", "dashes"),
    "parenthesis": ("Punctuation", "parentheses"),
    "exclamation": ("Tone", "exclamation marks"),
    "question": ("Tone", "question marks"),
    "quote": ("Structure", "quotation marks"),
}
_PRONOUNS = {"i", "you", "we", "my", "our", "your"}


def _factor_names() -> dict[str, FactorName]:
    names = {
        "mean_sentence_len": FactorName("Sentence length", "words per sentence"),
        "sd_sentence_len": FactorName("Sentence rhythm", "words of variation in sentence length"),
        "mean_word_len": FactorName("Diction", "letters per word", digits=2),
        "ttr_150": FactorName("Vocabulary", "distinct words per 100 words", mult=100.0),
        "number_per100": FactorName("Topic handling", "numbers per 100 words"),
        "uppercase_word_per100": FactorName("Tone", "all-capital words per 100 words"),
    }
    for key, (factor, unit) in _PUNCT_UNITS.items():
        names[f"{key}_per100"] = FactorName(factor, f"{unit} per 100 words")
    for word in FUNCTION_WORDS:
        shown = "I" if word == "i" else word
        factor = "Voice" if word in _PRONOUNS else "Function words"
        names[f"fw_{word}"] = FactorName(factor, f'uses of "{shown}" per 100 words')
    return names


#: Every feature of :func:`~persrm_utils.data.stylometry.feature_names`, as a trace cites it.
FACTOR_NAMES: dict[str, FactorName] = _factor_names()

#: The features a trace may cite by default: sentence and word length, vocabulary, punctuation,
#: numbers and capitals. Function-word rates are left out: in a 60-word continuation one extra
#: "about" moves its rate from 0 to 1.7 per 100 words, so they mostly cite chance. Measured with
#: three cited factors, citing them too dropped the share of decided verdicts that match the
#: label from 90% to 48% on the smoke pairs and from 71% to 61% on the cpu profile's C50 pairs.
#: Pass ``factors=`` to cite others.
CITABLE: tuple[str, ...] = tuple(k for k in feature_names() if not k.startswith("fw_"))


@lru_cache(maxsize=8192)
def _features_cached(text: str) -> tuple[tuple[str, float], ...]:
    return tuple(_text_features(text).items())


def _features(text: str) -> dict[str, float]:
    """text_features, memoised: each exemplar is measured once, not once per pair and order."""
    return dict(_features_cached(text))


def training_scale(exemplars: Iterable[Exemplar]) -> pd.Series:
    """The spread of every feature over the *training* exemplars' continuations.

    The writer compares continuations, so the yardstick is measured on continuations
    (``part="output"``), and on training texts only, so nothing about held-out authors leaks into
    the traces. Exemplars without ``meta.split`` (a user's own texts) are all used.
    """
    exemplars = list(exemplars)
    train = [e for e in exemplars if e.meta.get("split", "train") == "train"] or exemplars
    if len(train) < 2:
        raise DataError(
            "at least two training exemplars are needed to measure how much style varies",
            "collect more texts (notebook 01) before writing traces.",
        )
    return feature_scale(feature_table(train, part="output"))


# ----------------------------------------------------------------------------------------------
# (b) The stylometric writer
# ----------------------------------------------------------------------------------------------

RejectReason = Literal[
    "disagrees_with_label", "mixed_evidence", "tie", "too_few_features", "no_exemplars"
]


@dataclass(frozen=True)
class CitedFactor:
    """One feature as the trace cites it: numbers as shown (rounded) and the closer response."""

    key: str
    exemplars: float
    a: float
    b: float
    closer: Letter

    def sentence(self, n_exemplars: int = 2) -> str:
        """e.g. "Sentence length: the exemplars average 24.1 words per sentence; A has 23.5, B
        9.8, so A is closer." (one line per factor, the same shape every time, so a small
        model can learn it)."""
        name = FACTOR_NAMES[self.key]
        d = name.digits
        ref = "the exemplar has" if n_exemplars == 1 else "the exemplars average"
        return (
            f"{name.factor}: {ref} {self.exemplars:.{d}f} {name.unit}; "
            f"A has {self.a:.{d}f}, B {self.b:.{d}f}, so {self.closer} is closer."
        )


@dataclass
class StyleEvidence:
    """What the stylometric writer measured for one pair in one order, and what it concluded.

    ``verdict`` is the response closer to the exemplars on the cited factors (None when the
    evidence is a tie or too thin); ``reason`` is None for a usable trace, otherwise why there is
    none; ``completion`` is the trace in the judge format when there is one.
    """

    pair_id: str
    swap: bool
    label: Letter
    cited: list[CitedFactor] = field(default_factory=list)
    dist_a: float = math.nan
    dist_b: float = math.nan
    verdict: Letter | None = None
    reason: RejectReason | None = None
    completion: str | None = None


def _usable(scale: pd.Series, factors: Sequence[str]) -> list[str]:
    """The candidate features: citable, named, and with a real spread in ``scale``."""
    unknown = [k for k in factors if k not in FACTOR_NAMES]
    if unknown:
        raise DataError(
            f"unknown feature(s) to cite: {', '.join(unknown[:5])}",
            "choose among persrm_utils.data.stylometry.feature_names().",
        )
    names = [k for k in factors if k in scale.index]
    return [k for k in names if math.isfinite(float(scale[k])) and float(scale[k]) > 0]


def _shown(value: float, key: str) -> float:
    name = FACTOR_NAMES[key]
    return round(value * name.mult, name.digits)


def _comparison(verdict: Letter, wins: int, losses: int) -> str:
    """One sentence that weighs the cited factors, true to the numbers above it."""
    other = "B" if verdict == "A" else "A"
    n = wins + losses
    if not losses:
        return f"{verdict} is closer on all {n} factors."
    if wins > losses:
        return (
            f"{verdict} is closer on {wins} of {n} factors, and overall once each factor is "
            "scaled by its usual spread."
        )
    return (
        f"The factors split {wins} to {losses}, but {verdict}'s gaps are smaller than {other}'s "
        "once each factor is scaled by its usual spread."
    )


def _think(n_exemplars: int, cited: Sequence[CitedFactor], verdict: Letter) -> str:
    wins = sum(c.closer == verdict for c in cited)
    texts = "exemplar" if n_exemplars == 1 else f"{n_exemplars} exemplars"
    lines = [
        f"I compare the user's {texts} with both responses where A and B differ most.",
        *(c.sentence(n_exemplars) for c in cited),
        _comparison(verdict, wins, len(cited) - wins),
        f"This user would more likely prefer Response {verdict}.",
    ]
    return "\n".join(lines)


def stylometric_evidence(
    pair: Pair,
    exemplars_by_id: Mapping[str, Exemplar],
    scale: pd.Series,
    swap: bool = False,
    n_factors: int = 3,
    factors: Sequence[str] = CITABLE,
) -> StyleEvidence:
    """Measure, choose the factors to cite, decide, and write the trace if it can be trusted.

    1. Features of each shown exemplar's continuation (averaged), of Response A and of B.
    2. Rank features by how much A and B differ, each difference divided by the feature's
       spread in ``scale`` (so a gap of 5 words per sentence and one of 0.5 semicolons per 100
       words are comparable). Cite the top ``n_factors`` whose *shown* (rounded) numbers differ
       and are not equally far from the exemplars: every cited line names a closer response
       that a reader can check.
    3. The verdict is the response whose shown numbers are closer to the exemplars' over the
       cited factors (Euclidean distance after scaling). It is rejected when it disagrees with
       the true label (``disagrees_with_label``), when the cited lines mostly favour the other
       response (``mixed_evidence``: the reasoning would contradict its conclusion), on an exact
       tie, or with fewer than 3 citable factors (typical of ``minor_replace``, where a few
       synonyms move no measured feature).

    Three factors is the default: the lines then always have a majority (no 2-to-2 split that
    only the hidden scaling can settle), and the trace stays near 90 words, about 180 tokens,
    which a small model can learn and a short completion budget can hold.
    """
    if not 3 <= n_factors <= 5:
        raise DataError(f"n_factors={n_factors}", "cite 3, 4 or 5 factors.")
    truth = judge.label(pair, swap)
    ev = StyleEvidence(pair_id=pair.pair_id, swap=swap, label=truth)
    shown = judge.shown_exemplars(pair, exemplars_by_id)
    if not shown:
        ev.reason = "no_exemplars"
        return ev
    ex_feats = [_features(e.output) for e in shown]
    text_a, text_b = judge.responses(pair, swap)
    fa, fb = _features(text_a), _features(text_b)
    keys = _usable(scale, factors)
    fe = {k: sum(f[k] for f in ex_feats) / len(ex_feats) for k in keys}
    ranked = sorted(keys, key=lambda k: (-abs(fa[k] - fb[k]) / float(scale[k]), k))

    sum_a = sum_b = 0.0
    for key in ranked:
        if len(ev.cited) == n_factors or fa[key] == fb[key]:
            break
        e, a, b = _shown(fe[key], key), _shown(fa[key], key), _shown(fb[key], key)
        gap_a, gap_b = abs(a - e), abs(b - e)
        if a == b or math.isclose(gap_a, gap_b, abs_tol=1e-9):
            continue
        ev.cited.append(CitedFactor(key, e, a, b, "A" if gap_a < gap_b else "B"))
        unit = FACTOR_NAMES[key].mult * float(scale[key])
        sum_a += (gap_a / unit) ** 2
        sum_b += (gap_b / unit) ** 2
    ev.dist_a, ev.dist_b = math.sqrt(sum_a), math.sqrt(sum_b)
    if len(ev.cited) < 3:
        ev.reason = "too_few_features"
        return ev
    if math.isclose(ev.dist_a, ev.dist_b, rel_tol=1e-9):
        ev.reason = "tie"
        return ev
    ev.verdict = "A" if ev.dist_a < ev.dist_b else "B"
    wins = sum(c.closer == ev.verdict for c in ev.cited)
    if wins < len(ev.cited) - wins:
        ev.reason = "mixed_evidence"
    elif ev.verdict != truth:
        ev.reason = "disagrees_with_label"
    else:
        ev.completion = judge.format_answer(_think(len(shown), ev.cited, ev.verdict), ev.verdict)
    return ev


def stylometric_trace(
    pair: Pair,
    exemplars_by_id: Mapping[str, Exemplar],
    scale: pd.Series,
    swap: bool = False,
) -> str | None:
    """A completion grounded in measured style, or None when the numbers do not support the label.

    See :func:`stylometric_evidence` for how the factors are chosen and the verdict decided.
    """
    return stylometric_evidence(pair, exemplars_by_id, scale, swap).completion


def _pair_meta(pair: Pair) -> dict[str, Any]:
    return {
        "negative_type": pair.negative_type,
        "author_id": pair.author_id,
        "split": pair.split,
        "k": len(pair.exemplar_ids),
    }


def build_sft_traces(
    pairs: Sequence[Pair],
    exemplars_by_id: Mapping[str, Exemplar],
    scale: pd.Series,
    both_orders: bool = True,
    n_factors: int = 3,
) -> tuple[list[Trace], dict[str, Any]]:
    """Stylometric traces for every pair, in both A/B orders unless ``both_orders=False``.

    Both orders double the data and teach that the position of a response says nothing. The
    stats say how many traces were written, why the others were not, and how that splits by
    negative type (expect few ``minor_replace`` traces: a few swapped synonyms barely move any
    measured feature, so those pairs are left to GRPO).
    """
    traces: list[Trace] = []
    rejected: Counter[str] = Counter()
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    for pair in pairs:
        for swap in (False, True) if both_orders else (False,):
            ev = stylometric_evidence(pair, exemplars_by_id, scale, swap, n_factors)
            by_type[pair.negative_type]["attempted"] += 1
            if ev.completion is None:
                rejected[str(ev.reason)] += 1
                continue
            by_type[pair.negative_type]["written"] += 1
            traces.append(
                Trace(
                    pair_id=pair.pair_id,
                    swap=swap,
                    messages=judge.build_messages(pair, exemplars_by_id, swap=swap),
                    completion=ev.completion,
                    verdict=ev.label,
                    source=STYLOMETRIC,
                    meta={**_pair_meta(pair), "factors": [c.key for c in ev.cited]},
                )
            )
    return traces, _trace_stats(pairs, traces, by_type, rejected)


def _trace_stats(
    pairs: Sequence[Pair],
    traces: Sequence[Trace],
    by_type: Mapping[str, Counter[str]],
    rejected: Mapping[str, int],
) -> dict[str, Any]:
    """What every offline writer reports: counts, acceptance rate, rejections, per type."""
    attempted = sum(c["attempted"] for c in by_type.values())
    return {
        "pairs": len(pairs),
        "attempted": attempted,
        "written": len(traces),
        "rate": len(traces) / attempted if attempted else 0.0,
        "rejected": dict(rejected),
        "by_negative_type": {
            t: {"attempted": c["attempted"], "written": c["written"]} for t, c in by_type.items()
        },
    }


# ----------------------------------------------------------------------------------------------
# (c) Short reasoning and none: for small models and short completion budgets
# ----------------------------------------------------------------------------------------------

Reasoning = Literal["none", "short", "full"]

#: Cues a small model can read off the text in front of it, with no arithmetic: whether a
#: digit, a quotation mark, an exclamation or question mark occurs, and sentence length in three
#: coarse bands. The full trace cites measured rates ("24.1 words per sentence") that a 135M model
#: cannot compute while it writes; these it can see.
SHORT_CUES: tuple[str, ...] = ("numbers", "quotes", "exclamations", "sentences")


def visible_cues(text: str) -> dict[str, str]:
    """The :data:`SHORT_CUES` of one text, as the words the short trace writes."""

    sents = sentences(text) or [text]
    words = len(text.split()) / max(1, len(sents))
    band = "short" if words < 15 else "long" if words > 28 else "medium"
    return {
        "numbers": "numbers" if any(c.isdigit() for c in text) else "no numbers",
        "quotes": "quotes" if '"' in text else "no quotes",
        "exclamations": "exclamations" if ("!" in text or "?" in text) else "no exclamations",
        "sentences": f"{band} sentences",
    }


def cue_matches(exemplars: Sequence[Exemplar], text: str) -> int:
    """How many of the :data:`SHORT_CUES` of ``text`` equal those of the exemplars joined.

    This count is all the short trace's last line weighs: the response with more matches is
    the one "that matches the exemplars on more cues".
    """
    return _same_cues(visible_cues(" ".join(e.output for e in exemplars)), visible_cues(text))


def _same_cues(ref: Mapping[str, str], cues: Mapping[str, str]) -> int:
    return sum(cues[c] == ref[c] for c in SHORT_CUES)


def short_think(exemplars: Sequence[Exemplar], a: str, b: str, verdict: Letter) -> str:
    """Describe the exemplars, A and B by their visible cues, then say which fits, truthfully.

    The last line never claims more than the cues show: "on more cues" when they favour the
    verdict, "the cues tie" when they do not decide, and "the cues favour B, but A reads more
    like ..." when they point the other way (the verdict is the author's real text: the cues are
    evidence, not the rule).
    """
    ref = visible_cues(" ".join(e.output for e in exemplars)) if exemplars else None
    ca, cb = visible_cues(a), visible_cues(b)
    who = "the exemplar" if len(exemplars) == 1 else "the exemplars"
    lines = []
    if ref is not None:
        lines.append(f"{who[4:].capitalize()}: {', '.join(ref.values())}.")
    lines += [f"A: {', '.join(ca.values())}.", f"B: {', '.join(cb.values())}."]
    if ref is None:
        lines.append(f"{verdict} reads more like this user.")
        return "\n".join(lines)
    score_a, score_b = _same_cues(ref, ca), _same_cues(ref, cb)
    other = "B" if verdict == "A" else "A"
    mine, theirs = (score_a, score_b) if verdict == "A" else (score_b, score_a)
    if mine > theirs:
        lines.append(f"{verdict} matches {who} on more cues.")
    elif mine == theirs:
        lines.append(f"The cues tie; {verdict} reads more like {who}.")
    else:
        lines.append(f"The cues favour {other}, but {verdict} reads more like {who}.")
    return "\n".join(lines)


def reasoning_traces(
    pairs: Sequence[Pair],
    exemplars_by_id: Mapping[str, Exemplar],
    reasoning: Reasoning,
    scale: pd.Series | None = None,
) -> tuple[list[Trace], dict[str, Any]]:
    """Traces for every pair in both orders, as long as the profile's reasoning budget allows.

    * ``"full"``: the stylometric writer (:func:`build_sft_traces`, about 180 tokens, cites
      measured numbers; pairs whose numbers disagree with the label get no trace);
    * ``"short"``: :func:`short_think` (visible cues, about 80 SmolLM2 tokens; every pair gets
      one);
    * ``"none"``: an empty ``<think>`` and the verdict (18 SmolLM2 tokens, of which the judge
      writes only the letter when the profile prefills the tags: ``answer_prefill``; every
      pair gets one).

    A short budget is what makes a CPU run affordable: each completion token is one sequential
    forward pass when judging and when sampling GRPO groups. What it costs is the inspectable
    rationale, and any gain that reasoning brings to the verdict, which is measured, not assumed
    (RESULTS.md).
    """
    if reasoning == "full":
        if scale is None:
            scale = training_scale(exemplars_by_id.values())
        return build_sft_traces(pairs, exemplars_by_id, scale, both_orders=True)
    if reasoning not in ("short", "none"):
        raise DataError(f"reasoning={reasoning!r}", "use 'none', 'short' or 'full'.")
    traces: list[Trace] = []
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    for pair in pairs:
        shown = judge.shown_exemplars(pair, exemplars_by_id)
        for swap in (False, True):
            truth = judge.label(pair, swap)
            a, b = judge.responses(pair, swap)
            think = short_think(shown, a, b, truth) if reasoning == "short" else ""
            by_type[pair.negative_type]["attempted"] += 1
            by_type[pair.negative_type]["written"] += 1
            traces.append(
                Trace(
                    pair_id=pair.pair_id,
                    swap=swap,
                    messages=judge.build_messages(pair, exemplars_by_id, swap=swap),
                    completion=judge.format_answer(think, truth),
                    verdict=truth,
                    source=f"{reasoning}-reasoning" if reasoning == "short" else "verdict-only",
                    meta=_pair_meta(pair),
                )
            )
    return traces, _trace_stats(pairs, traces, by_type, {})


# ----------------------------------------------------------------------------------------------
# (a) A teacher LLM, with rejection sampling
# ----------------------------------------------------------------------------------------------

TEACHER_INSTRUCTION = (
    "Before answering, reason step by step inside <think>...</think>: first describe this user's "
    "personal factors as the exemplars show them (tone, diction, sentence length, punctuation, "
    "structure, topic handling), then compare Response A and Response B with them, citing "
    "concrete evidence from the texts. Judge only how well each response fits this user. Keep the "
    "reasoning under 150 words. Then give your verdict as <answer>[[A]]</answer> or "
    "<answer>[[B]]</answer>."
)


#: Tokens a teacher may write: room for the reasoning :data:`TEACHER_INSTRUCTION` asks for (under
#: 150 words, about 200 tokens) and the answer tag. A teacher's budget is its own: tied to the
#: student's ``max_completion_length`` it would be 1 token on a verdict-only profile, and every
#: answer would be cut off before its verdict.
TEACHER_MIN_NEW_TOKENS = 320


def teacher_max_new_tokens(student_max_completion_length: int) -> int:
    """The teacher's token budget: at least :data:`TEACHER_MIN_NEW_TOKENS`, or the student's."""
    return max(student_max_completion_length, TEACHER_MIN_NEW_TOKENS)


def fit_to_budget(traces: Sequence[Trace], reasoning: Reasoning) -> list[Trace]:
    """Teacher traces as the student's reasoning budget can learn them.

    A verdict-only student (``reasoning="none"``) writes one letter inside harness-written tags,
    so it can learn no reasoning: its trace keeps the teacher's (right) verdict with an empty
    ``<think>``, the format its SFT rows need. What the teacher still contributes is the
    rejection: pairs it got wrong give no trace. Other budgets keep the teacher's reasoning.
    """
    if reasoning != "none":
        return list(traces)
    return [t.model_copy(update={"completion": judge.format_answer("", t.verdict)}) for t in traces]


def _seed(pair_id: str, swap: bool, sample: int) -> int:
    """A seed per (pair, order, sample): stable across runs, so the cache can resume."""
    blob = f"{pair_id}\x1f{int(swap)}\x1f{sample}".encode()
    return int(hashlib.sha256(blob).hexdigest()[:8], 16)


def teacher_requests(
    pairs: Sequence[Pair],
    exemplars_by_id: Mapping[str, Exemplar],
    max_new_tokens: int,
    swap_both: bool = True,
    temperature: float = 0.0,
    samples: int = 1,
) -> list[GenRequest]:
    """One request per pair and order (and sample), asking a teacher for a reasoned verdict.

    The teacher gets the judge's own messages with :data:`TEACHER_INSTRUCTION` appended to the
    user turn, and never the answer. The plain judge messages, which the student will be
    trained on, ride along in ``meta`` so :func:`accept_teacher` needs nothing else. With
    ``samples > 1`` (and ``temperature > 0``) each order is asked several times under different
    seeds, so a pair the teacher gets wrong once has more chances.
    """
    if samples < 1:
        raise DataError(f"samples={samples}", "ask for at least one sample per pair and order.")
    if samples > 1 and temperature == 0:
        raise DataError(
            "several samples at temperature 0 are all the same greedy answer",
            "set temperature > 0 (e.g. 0.7) or samples=1.",
        )
    out = []
    for pair in pairs:
        for swap in (False, True) if swap_both else (False,):
            messages = judge.build_messages(pair, exemplars_by_id, swap=swap)
            teacher = [dict(m) for m in messages]
            teacher[-1]["content"] += "\n\n" + TEACHER_INSTRUCTION
            for sample in range(samples):
                out.append(
                    GenRequest(
                        messages=teacher,
                        max_new_tokens=max_new_tokens,
                        temperature=temperature,
                        seed=_seed(pair.pair_id, swap, sample),
                        meta={
                            "pair_id": pair.pair_id,
                            "swap": swap,
                            "sample": sample,
                            "judge_messages": messages,
                        },
                    )
                )
    return out


def accept_teacher(
    results: Sequence[GenResult], pairs: Sequence[Pair]
) -> tuple[list[Trace], dict[str, Any]]:
    """Keep the teacher traces whose verdict is the true label; count why the others were not.

    A kept completion is rewritten into the canonical judge format (its reasoning, then one
    answer tag), so SFT teaches exactly the format GRPO and evaluation read. Rejections are
    ``wrong_verdict`` or ``invalid_format`` by :func:`~persrm_utils.judge.format.parse_verdict`
    reason (plus ``error`` for failed requests, ``no_reasoning`` for a verdict without reasoning and
    ``tags_in_reasoning`` for reasoning that itself contains tags). With several samples per
    order, only the first correct one is kept; the rest are counted as ``duplicates``.
    """
    by_id = {p.pair_id: p for p in pairs}
    traces: list[Trace] = []
    kept: set[tuple[str, bool]] = set()
    wrong = duplicates = 0
    invalid: Counter[str] = Counter()
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    for res in results:
        pair_id = res.meta.get("pair_id")
        if pair_id not in by_id or "judge_messages" not in res.meta:
            raise DataError(
                f"a teacher result names pair {pair_id!r}, which is not among the pairs given "
                "(or it lacks the judge messages)",
                "pass the same pairs the requests were built from with teacher_requests().",
                field="meta.pair_id",
            )
        pair, swap = by_id[pair_id], bool(res.meta.get("swap", False))
        by_type[pair.negative_type]["total"] += 1
        if res.finish_reason == "error":
            invalid["error"] += 1
            continue
        verdict = judge.parse_verdict(res.text)
        if verdict.letter is None:
            invalid[verdict.reason] += 1
            continue
        if verdict.letter != judge.label(pair, swap):
            wrong += 1
            continue
        if not verdict.think:
            invalid["no_reasoning"] += 1
            continue
        if any(t in verdict.think for t in judge.TAGS):
            invalid["tags_in_reasoning"] += 1
            continue
        if (pair_id, swap) in kept:
            duplicates += 1
            continue
        kept.add((pair_id, swap))
        by_type[pair.negative_type]["accepted"] += 1
        traces.append(
            Trace(
                pair_id=pair_id,
                swap=swap,
                messages=res.meta["judge_messages"],
                completion=judge.format_answer(verdict.think, verdict.letter),
                verdict=verdict.letter,
                source=f"teacher:{res.backend}:{res.model}",
                meta={**_pair_meta(pair), "finish_reason": res.finish_reason},
            )
        )
    total = len(results)
    stats = {
        "total": total,
        "accepted": len(traces),
        "rate": len(traces) / total if total else 0.0,
        "rejected": {"wrong_verdict": wrong, "invalid_format": dict(invalid)},
        "duplicates": duplicates,
        "by_negative_type": {
            t: {"total": c["total"], "accepted": c["accepted"]} for t, c in by_type.items()
        },
    }
    return traces, stats


# ----------------------------------------------------------------------------------------------
# Rows for TRL
# ----------------------------------------------------------------------------------------------


def to_sft_rows(traces: Iterable[Trace]) -> list[dict[str, list[dict[str, str]]]]:
    """Conversational rows for TRL's ``SFTTrainer``: ``{"messages": [system, user, assistant]}``.

    With ``assistant_only_loss=True`` the loss covers only the assistant turn, so the model
    learns to write the reasoning and verdict, not to reproduce the exemplars it was shown.
    """
    return [
        {
            "messages": [
                *({"role": m["role"], "content": m["content"]} for m in t.messages),
                {"role": "assistant", "content": t.completion},
            ]
        }
        for t in traces
    ]
