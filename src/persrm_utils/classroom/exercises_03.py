"""The exercises of notebook 03 (SFT): each check recomputes the answer itself."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from persrm_utils.by_hand.memory import ARCHS, GB, NF4_BYTES
from persrm_utils.judge.format import REASONS, label, parse_verdict, user_message

if TYPE_CHECKING:
    from persrm_utils.run.folders import RunFolder

from persrm_utils.classroom.checks import (
    MODEL_03,
    Checked,
    _mapping,
    _not_answered,
    _number,
    _ok,
    _run,
    _wrong,
)
from persrm_utils.classroom.exercises_02 import _pairs

# 03 · SFT
# ----------------------------------------------------------------------------------------------


def qlora_base_bytes(model: str = MODEL_03) -> float:
    """Bytes of a model's frozen weights under QLoRA: NF4 linear layers, 16-bit embeddings."""

    arch = ARCHS[model]
    emb = arch.embedding_parameters()
    return (arch.parameters() - emb) * NF4_BYTES + emb * 2


def check_03_warmup(answer: float | None) -> Checked:
    """The bytes the frozen base weights of Qwen2.5-7B take under QLoRA.

    Verifies, within 0.1%, (parameters - embedding parameters) x ``memory.NF4_BYTES`` plus the
    embedding parameters x 2 bytes (bitsandbytes keeps embeddings in 16-bit), from
    ``memory.ARCHS``. Common slips (16 bytes per parameter, all weights in 4 bit) get their own
    hint.
    """
    if answer is None:
        return _not_answered(
            "ARCHS['Qwen2.5-7B'].parameters(), .embedding_parameters(), NF4_BYTES."
        )

    value = _number(answer, "answer")
    expected = qlora_base_bytes(MODEL_03)
    if abs(value - expected) <= 1e-3 * expected:
        return _ok(
            f"{expected / GB:.2f} GB of frozen weights for {MODEL_03} (fp16: "
            f"{ARCHS[MODEL_03].parameters() * 2 / GB:.1f} GB)."
        )
    n = ARCHS[MODEL_03].parameters()
    slips = {
        n * 16: "that is full fine-tuning (weights, gradients and Adam), not frozen QLoRA weights",
        n * 2: "that is the model in fp16; QLoRA stores the linear layers in 4 bit",
        n * NF4_BYTES: "the embeddings are not quantized: bitsandbytes keeps them in 16 bit",
        n * 0.5: "NF4 also stores one absmax per 64 weights (NF4_BYTES, not 0.5), and the "
        "embeddings stay in 16 bit",
        expected / GB: "the answer is in bytes, not GB",
    }
    for wrong_value, why in slips.items():
        if abs(value - wrong_value) <= 1e-3 * abs(wrong_value):
            _wrong(f"{value:,.0f} is not it: {why}.", "see section 3 of the notebook.")
    _wrong(
        f"Expected about {expected / GB:.2f} GB ({expected:,.0f} bytes), got {value:,.0f}.",
        "(parameters - embedding parameters) * NF4_BYTES + embedding parameters * 2.",
    )


#: One way to make each invalid reason, shown when a learner's text parses otherwise.
_REASON_HINTS: dict[str, str] = {
    "no_answer_tag": "close the reasoning with </think> and write no <answer> tag after it.",
    "answer_inside_think": "put the only <answer>[[A]]</answer> inside <think>...</think>.",
    "unclosed_think": "open <think> and never close it (a completion cut at its token limit).",
    "truncated": "after </think>, open <answer> and never close it.",
    "both_letters": "one final answer tag holding both [[A]] and [[B]].",
    "no_letter": "a final answer tag with no [[A]] or [[B]] in it, e.g. <answer>A</answer>.",
}


def check_03_core(answer: Mapping[str, str] | None) -> Checked:
    """One judge output per reason a verdict is invalid, each parsed as exactly that reason.

    Verifies ``parse_verdict(answer[reason]).reason == reason`` for every reason of
    ``judge.REASONS`` except "ok".
    """
    if answer is None:
        return _not_answered("a dict {reason: text} for the six invalid reasons of REASONS.")

    reasons = [r for r in REASONS if r != "ok"]
    got = _mapping(answer, reasons, "{'no_answer_tag': '<think>...</think>', ...}")
    for reason in reasons:
        text = got[reason]
        if not isinstance(text, str):
            _wrong(f"answer['{reason}'] should be a string.", _REASON_HINTS[reason])
        parsed = parse_verdict(text).reason
        if parsed != reason:
            _wrong(
                f"answer['{reason}'] parses as '{parsed}', expected '{reason}'.",
                _REASON_HINTS[reason],
            )
    return _ok(f"all {len(reasons)} ways to lose a verdict: {', '.join(reasons)}.")


def _first_difference(expected: str, given: str) -> tuple[int, str, str]:
    """(1-based line number, expected line, given line) of the first line that differs."""
    want, have = expected.splitlines(), given.splitlines()
    for i in range(max(len(want), len(have))):
        a = want[i] if i < len(want) else "(no more lines)"
        b = have[i] if i < len(have) else "(no more lines)"
        if a != b:
            return i + 1, a, b
    return len(want), "(a final newline or none)", "(the other)"


def check_03_stretch(answer: Mapping[str, str] | None, run: RunFolder | Path | str) -> Checked:
    """The judge's user message for the first test pair with no exemplars (k=0) and A/B swapped.

    Verifies ``answer["user"] == judge.user_message(pair, by_id, k=0, swap=True)`` for the first
    pair of pairs/test.jsonl, and ``answer["label"]`` against ``judge.label(pair, swap=True)``.
    """
    if answer is None:
        return _not_answered("NO_EXEMPLARS, [Prompt], [Response A], [Response B], QUESTION.")

    got = _mapping(answer, ["user", "label"], "{'user': str, 'label': 'A' or 'B'}")
    pair = _pairs(_run(run), ("test",))[0]
    expected = user_message(pair, {}, k=0, swap=True)
    if got["user"] != expected:
        line, want, have = _first_difference(expected, str(got["user"]))
        _wrong(
            f"Line {line} of your message differs from user_message(pair, by_id, k=0, "
            f"swap=True): expected {want[:70]!r}, yours {have[:70]!r}.",
            "blocks joined by a blank line ('\\n\\n'); with swap=True, Response A is "
            "pair.response_b.",
        )
    if got["label"] != label(pair, swap=True):
        _wrong(
            f"The real text is shown as {label(pair, swap=True)} after the swap, not "
            f"{got['label']!r}.",
            "pair.chosen_position is where it was before the swap.",
        )
    return _ok(f"the k=0 prompt, with the real text as Response {got['label']}.")


# ----------------------------------------------------------------------------------------------
