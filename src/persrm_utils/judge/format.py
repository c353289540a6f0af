"""The judge's prompt and answer format: defined once, used by SFT, GRPO and evaluation alike.

A reward model that reasons is only as good as the line that reads its verdict. If SFT traces,
the GRPO correctness reward and the evaluation metrics each parsed "the answer" in their own way,
a model could be rewarded in training for an output that evaluation scores as wrong (or the other
way round). So everything that writes the judge's prompt or reads its output goes through this
module (docs/design.md §1):

* :data:`SYSTEM_PROMPT` and :func:`build_messages` lay out the exemplars, the prompt and the two
  responses, optionally with A and B swapped (:func:`label` says which letter is then the
  author's real text). Nothing in the prompt depends on which response is real except the order
  of the two texts themselves.
* :func:`format_answer` writes a completion in the one accepted format::

      <think>
      ...reasoning...
      </think>
      <answer>[[A]]</answer>

* :func:`parse_verdict` reads a completion back. Its rules, chosen so that a model cannot get a
  verdict counted by accident, are:

  1. The reasoning ends at the **last** ``</think>``; the verdict is read only after it. An
     ``<answer>`` written inside the reasoning never counts (``answer_inside_think``). A
     ``</think>`` with no ``<think>`` before it closes reasoning that began at the start of the
     text (chat templates that open ``<think>`` in the prompt produce exactly this). A text with
     neither tag is read as a whole: a base model's bare ``<answer>[[A]]</answer>`` still has a
     verdict (``think`` is then ``None``, and :attr:`Verdict.exact` is False for the format
     reward).
  2. A ``<think>`` that is never closed, or reopened after the last ``</think>``, is
     ``unclosed_think`` (usually a completion cut at its token limit mid-reasoning).
  3. Only the last ``<answer>`` after the reasoning counts (docs/design.md §1: "only the last
     ``<answer>[[X]]</answer>`` counts"). If that last tag is never closed the output is
     ``truncated``, even when an earlier complete tag exists: the model was still changing its
     answer. Several complete tags are allowed (the last wins) but flagged by
     :attr:`Verdict.n_answers`, so a format reward can penalise them.
  4. Inside the final tag, exactly one of ``[[A]]`` and ``[[B]]`` must appear: both is
     ``both_letters``, neither is ``no_letter``. Letters are accepted **in upper case only and
     with nothing inside the brackets** (``[[a]]`` and ``[[ A ]]`` are ``no_letter``), because
     that is the format the prompt asks for and a lenient parser would teach nothing. Whitespace
     and other words around ``[[A]]`` inside the tag are tolerated (and make
     :attr:`Verdict.exact` False). Tag names are matched exactly, in lower case.
  5. An empty reasoning block is not invalid; it is flagged by :attr:`Verdict.think_empty`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from persrm_utils.errors import DataError
from persrm_utils.records import Exemplar, Pair
from persrm_utils.tags import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    VERDICT_PREFIX,
    VERDICT_SUFFIX,
)

Letter = Literal["A", "B"]

#: Every tag string of the format; reasoning text must contain none of them.
TAGS: tuple[str, ...] = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

FORMAT_LINE = (
    "Write your reasoning inside <think>...</think>, then give your verdict as "
    "<answer>[[A]]</answer> or <answer>[[B]]</answer>."
)

SYSTEM_PROMPT = (
    "You are a personalized reward model. Read the user's exemplars, infer their personal factors "
    "(tone, diction, sentence length, punctuation, structure, topic handling), then decide which "
    "response this user would prefer.\n" + FORMAT_LINE
)

NO_EXEMPLARS = (
    "No exemplars are available for this user: judge from the prompt and responses alone."
)
QUESTION = "Which response would this user prefer?"
#: The question of a pair shown without an opening (the user-swap test,
#: :mod:`persrm_utils.data.user_swap`): an opening belongs to one of the two texts and would
#: give the answer away by coherence, so the judge is asked about authorship alone.
NO_PROMPT_QUESTION = "Which of these two texts did the writer of the exemplars write?"


def full_answer(prefix: str, generated: str) -> str:
    """The whole answer: what the harness wrote, what the judge generated, and the closing.

    After :data:`VERDICT_PREFIX` the judge writes only the letter, and the harness closes the
    tag with :data:`VERDICT_SUFFIX` (unless the judge wrote a closing tag itself). Whatever the
    judge wrote instead of a bare ``A`` or ``B`` stays in the text, so the parser still refuses
    it (``[[a]]`` or ``[[The]]`` is ``no_letter``).
    """
    text = prefix + generated
    if prefix == VERDICT_PREFIX and ANSWER_CLOSE not in generated:
        text += VERDICT_SUFFIX
    return text


#: Why a completion has no verdict ("ok" when it has one).
Reason = Literal[
    "ok",
    "no_answer_tag",
    "answer_inside_think",
    "unclosed_think",
    "truncated",
    "both_letters",
    "no_letter",
]
REASONS: tuple[Reason, ...] = (
    "ok",
    "no_answer_tag",
    "answer_inside_think",
    "unclosed_think",
    "truncated",
    "both_letters",
    "no_letter",
)


# ----------------------------------------------------------------------------------------------
# The prompt
# ----------------------------------------------------------------------------------------------


def label(pair: Pair, swap: bool = False) -> Letter:
    """The letter under which the author's real text is shown, after the optional swap."""
    if not swap:
        return pair.chosen_position
    return "B" if pair.chosen_position == "A" else "A"


def responses(pair: Pair, swap: bool = False) -> tuple[str, str]:
    """(Response A, Response B) as the judge sees them, after the optional swap."""
    a, b = pair.response_a, pair.response_b
    return (b, a) if swap else (a, b)


def shown_exemplars(
    pair: Pair, exemplars_by_id: Mapping[str, Exemplar], k: int | None = None
) -> list[Exemplar]:
    """The first ``k`` of the pair's exemplars (all of them when ``k`` is None).

    ``k`` larger than the pair has is an error rather than silently fewer exemplars: an
    evaluation "with 3 exemplars" that showed 2 would report the wrong thing.
    """
    ids = list(pair.exemplar_ids)
    judged = {pair.text_id}
    if pair.negative_source.startswith("real:"):  # a real negative is a judged text too
        judged.add(pair.negative_source.removeprefix("real:"))
    if k is None:
        k = len(ids)
    if not 0 <= k <= len(ids):
        raise DataError(
            f"pair '{pair.pair_id}' has {len(ids)} exemplar(s), {k} were asked for",
            "use 0 <= k <= len(pair.exemplar_ids), or select pairs by pair.meta['k'] first.",
            field="exemplar_ids",
        )
    out = []
    for tid in ids[:k]:
        if tid in judged:
            which = "its own text" if tid == pair.text_id else "the other judged text"
            raise DataError(
                f"pair '{pair.pair_id}' lists {which} '{tid}' as an exemplar: the judge "
                "would see the answer",
                "rebuild the pairs with plan_pairs (it never shows a pair its own text).",
                field="exemplar_ids",
            )
        if tid not in exemplars_by_id:
            raise DataError(
                f"pair '{pair.pair_id}' names exemplar '{tid}', which is not among the "
                "exemplars given",
                "pass the exemplars.jsonl the pairs were made from (keyed by text_id).",
                field="exemplar_ids",
            )
        out.append(exemplars_by_id[tid])
    return out


def user_message(
    pair: Pair,
    exemplars_by_id: Mapping[str, Exemplar],
    k: int | None = None,
    swap: bool = False,
) -> str:
    """The user turn: exemplars, then the prompt, then the two responses, then the question."""
    a, b = responses(pair, swap)
    return compare_message(pair.prompt, a, b, shown_exemplars(pair, exemplars_by_id, k))


def exemplar_blocks(exemplars: Sequence[Exemplar]) -> list[str]:
    """One ``[Exemplar i]`` block per exemplar, as every prompt of the series shows them.

    Shared by the judge's prompt and the Bradley-Terry reward model's context
    (:func:`bt_context`, below), so both models read the user's writing
    laid out the same way; each caller says in its own words when there is none.
    """
    return [
        f"[Exemplar {i}] Prompt: {ex.prompt.strip()}\nText: {ex.output.strip()}"
        for i, ex in enumerate(exemplars, 1)
    ]


def compare_message(prompt: str, a: str, b: str, exemplars: Sequence[Exemplar]) -> str:
    """The judge's user turn for any two texts: what :func:`user_message` writes for a pair.

    Separate from :class:`Pair` so the same judge can compare texts that are not a preference
    pair at all, e.g. two samples of a policy in best-of-N (notebook 06). An empty ``prompt``
    (a user-swap pair) leaves the ``[Prompt]`` block out and asks :data:`NO_PROMPT_QUESTION`.
    """
    blocks = exemplar_blocks(exemplars) or [NO_EXEMPLARS]
    if prompt.strip():
        blocks.append(f"[Prompt] {prompt.strip()}")
    blocks += [
        f"[Response A] {a.strip()}",
        f"[Response B] {b.strip()}",
        QUESTION if prompt.strip() else NO_PROMPT_QUESTION,
    ]
    return "\n\n".join(blocks)


def build_messages(
    pair: Pair,
    exemplars_by_id: Mapping[str, Exemplar],
    k: int | None = None,
    swap: bool = False,
) -> list[dict[str, str]]:
    """The judge's chat: the system prompt and one user turn (see :func:`user_message`).

    ``k`` limits the exemplars to the pair's first ``k`` (``k=0``: the zero-exemplar ablation,
    which says so in the prompt instead of showing an empty list). ``swap=True`` exchanges A and B
    for position-debiased evaluation; :func:`label` gives the matching answer. The messages depend
    on which response is real only through the order of the two texts.
    """
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(pair, exemplars_by_id, k, swap)},
    ]


def compare_messages(
    prompt: str, a: str, b: str, exemplars: Sequence[Exemplar]
) -> list[dict[str, str]]:
    """The judge's chat for two arbitrary texts (see :func:`compare_message`)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": compare_message(prompt, a, b, exemplars)},
    ]


# ----------------------------------------------------------------------------------------------
# The answer
# ----------------------------------------------------------------------------------------------


def format_answer(think: str, verdict: Letter) -> str:
    """A completion in the judge format: ``<think>\\n…\\n</think>\\n<answer>[[X]]</answer>``.

    Refuses reasoning that contains a tag string: such a text would not parse back to
    ``verdict``, and a trace that teaches a broken format is worse than no trace.
    """
    if verdict not in ("A", "B"):
        raise DataError(f"verdict must be 'A' or 'B', got {verdict!r}", "pass 'A' or 'B'.")
    found = [t for t in TAGS if t in think]
    if found:
        raise DataError(
            f"the reasoning contains the tag(s) {', '.join(found)}",
            "remove tag strings from the reasoning text; only the format may write them.",
        )
    return f"{THINK_OPEN}\n{think.strip()}\n{THINK_CLOSE}\n{ANSWER_OPEN}[[{verdict}]]{ANSWER_CLOSE}"


@dataclass(frozen=True)
class Verdict:
    """What :func:`parse_verdict` read from one completion.

    ``letter`` is None exactly when ``reason != "ok"``. ``think`` is the reasoning text (stripped),
    or None when the completion has no reasoning block. ``n_answers`` counts the answer tags after
    the reasoning; ``exact`` is True only for the canonical layout (one reasoning block, one
    answer tag holding just ``[[X]]``, nothing before or after): what a format reward checks.
    """

    letter: Letter | None
    reason: Reason
    think: str | None = None
    think_empty: bool = False
    n_answers: int = 0
    exact: bool = False

    @property
    def valid(self) -> bool:
        return self.letter is not None

    @property
    def multiple_answers(self) -> bool:
        """More than one answer tag after the reasoning (the last one counted)."""
        return self.n_answers > 1


def _invalid(reason: Reason, think: str | None, n_answers: int = 0) -> Verdict:
    return Verdict(
        letter=None,
        reason=reason,
        think=think,
        think_empty=think is not None and not think,
        n_answers=n_answers,
    )


def parse_verdict(text: str) -> Verdict:
    """Read the verdict of one completion, by the rules in this module's docstring."""
    if not isinstance(text, str):
        raise DataError(
            f"parse_verdict needs the completion's text (a str), got {type(text).__name__} "
            f"{text!r:.40}",
            "pass the generated text (GenResult.text); a failed generation has no text, so "
            "check finish_reason == 'error' first and count it as no verdict.",
            field="text",
        )
    first_open = text.find(THINK_OPEN)
    last_open = text.rfind(THINK_OPEN)
    last_close = text.rfind(THINK_CLOSE)
    if last_close == -1 and first_open == -1:  # no reasoning block at all
        think, head, tail = None, "", text
    elif last_close == -1 or last_open > last_close:
        start = last_open + len(THINK_OPEN)
        return _invalid("unclosed_think", text[start:].strip())
    else:
        start = first_open + len(THINK_OPEN) if first_open != -1 else 0
        think = text[start:last_close].strip()
        head, tail = text[:last_close], text[last_close + len(THINK_CLOSE) :]

    n_answers = tail.count(ANSWER_OPEN)
    if not n_answers:
        reason: Reason = "answer_inside_think" if ANSWER_OPEN in head else "no_answer_tag"
        return _invalid(reason, think)
    open_at = tail.rfind(ANSWER_OPEN)
    close_at = tail.find(ANSWER_CLOSE, open_at)
    if close_at == -1:
        return _invalid("truncated", think, n_answers)
    content = tail[open_at + len(ANSWER_OPEN) : close_at]
    has_a, has_b = "[[A]]" in content, "[[B]]" in content
    if has_a and has_b:
        return _invalid("both_letters", think, n_answers)
    if not (has_a or has_b):
        return _invalid("no_letter", think, n_answers)
    letter: Letter = "A" if has_a else "B"
    exact = (
        think is not None
        and first_open != -1
        and not text[:first_open].strip()
        and text.count(THINK_OPEN) == 1
        and text.count(THINK_CLOSE) == 1
        and not any(t in think for t in TAGS)
        and n_answers == 1
        and not tail[:open_at].strip()
        and content.strip() == f"[[{letter}]]"
        and not tail[close_at + len(ANSWER_CLOSE) :].strip()
    )
    return Verdict(
        letter=letter,
        reason="ok",
        think=think,
        think_empty=think is not None and not think,
        n_answers=n_answers,
        exact=exact,
    )


# The Bradley-Terry reward model's and the likelihood's context (no responses in it)

BT_SYSTEM_PROMPT = (
    "You are a personalized reward model. Read the user's exemplars, infer their personal factors "
    "(tone, diction, sentence length, punctuation, structure, topic handling), then rate how "
    "likely it is that this user wrote the assistant's continuation."
)
BT_INSTRUCTION = "Continue the prompt as this user would."
#: The instruction of a pair with no opening (the user-swap test).
BT_NO_PROMPT_INSTRUCTION = "Write a text as this user would."
BT_NO_EXEMPLARS = "No exemplars are available for this user."


def bt_context(prompt: str, exemplars: Sequence[Exemplar]) -> list[dict[str, str]]:
    """The Bradley-Terry reward model's context: system prompt, then exemplars and the opening.

    Laid out like the judge's prompt (the same exemplar blocks), minus the two responses: a
    scalar reward model scores one text at a time, as the assistant turn after this context.
    Kept here, beside the judge's prompt, because the reward model
    (:func:`persrm_utils.evaluate.baselines.bt_prompt`), best-of-N (notebook 06) and the base
    model's likelihood (:mod:`persrm_utils.judge.likelihood`) all read the user this way.
    """
    blocks = exemplar_blocks(exemplars) or [BT_NO_EXEMPLARS]
    if prompt.strip():
        blocks += [f"[Prompt] {prompt.strip()}", BT_INSTRUCTION]
    else:  # a user-swap pair: no opening is shown (it would give the answer away)
        blocks.append(BT_NO_PROMPT_INSTRUCTION)
    return [
        {"role": "system", "content": BT_SYSTEM_PROMPT},
        {"role": "user", "content": "\n\n".join(blocks)},
    ]
