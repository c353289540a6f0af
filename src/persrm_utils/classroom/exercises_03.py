"""The exercises of notebook 03 (SFT): each check recomputes the answer itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persrm_utils.by_hand.lora import LoraFactors, peft_lora_output
from persrm_utils.by_hand.memory import ARCHS, GB, NF4_BYTES
from persrm_utils.by_hand.nf4 import BLOCKSIZE, dequantize, nf4_code_book, quantize
from persrm_utils.judge.format import REASONS, label, parse_verdict, user_message

if TYPE_CHECKING:
    from persrm_utils.run.folders import RunFolder

from persrm_utils.classroom.checks import (
    MODEL_03,
    Checked,
    _call,
    _callable,
    _known_slip,
    _mapping,
    _not_answered,
    _number,
    _ok,
    _run,
    _same,
    _tensor,
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


# ----------------------------------------------------------------------------------------------
# By hand: LoRA's forward and NF4, checked against peft and bitsandbytes on fresh tensors
# ----------------------------------------------------------------------------------------------

_LORA_SIGNATURE = "lora_forward(layer, x, A, B, alpha, r)"
_LORA_SHAPES = (
    "A is r x in and B is out x r: x @ A.T gives r numbers per token, then @ B.T gives out."
)


def _lora_inputs() -> tuple[Any, Any, Any, Any, float, int]:
    """A layer the learner has not seen: not square (A and B cannot be swapped unnoticed), with a
    bias, a 3-d input (batch x tokens x in, as inside a model), alpha / r = 4."""
    import torch

    gen = torch.Generator().manual_seed(2103)
    layer = torch.nn.Linear(48, 80, bias=True)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(80, 48, generator=gen) * 0.1)
        layer.bias.copy_(torch.randn(80, generator=gen))
    r, alpha = 4, 16.0
    A = torch.randn(r, 48, generator=gen) * 0.1
    B = torch.randn(80, r, generator=gen) * 0.1
    x = torch.randn(2, 3, 48, generator=gen)
    return layer, x, A, B, alpha, r


def check_03_lora(answer: Callable[..., Any] | None) -> Checked:
    """Your LoRA forward pass, ``lora_forward(layer, x, A, B, alpha, r)``, against peft.

    Verifies, on a fresh layer (48 -> 80, with bias), a batch of shape 2 x 3 x 48 and random
    non-zero A and B, that your output equals peft's ``LoraLayer`` holding the same A and B
    (``by_hand.peft_lora_output``) within 1e-5. A missing or inverted alpha / r, a forgotten
    frozen layer or bias, and A and B in the wrong order get their own hint.
    """
    if answer is None:
        return _not_answered(
            "def lora_forward(layer, x, A, B, alpha, r): layer(x) plus (alpha / r) * B (A x)."
        )

    fn = _callable(answer, _LORA_SIGNATURE)
    layer, x, A, B, alpha, r = _lora_inputs()
    expected = peft_lora_output(layer, x, LoraFactors(A=A, B=B, alpha=alpha, r=r))
    got = _call(
        fn, (layer, x, A, B, alpha, r), "a 48 -> 80 layer, x of shape 2 x 3 x 48", _LORA_SHAPES
    )
    got = _tensor(got, expected, "lora_forward", "return layer(x) + the scaled update.")
    if _same(got, expected, 1e-5):
        return _ok("your LoRA forward equals peft's LoraLayer with the same A and B.")
    base, update = layer(x).detach(), (x @ A.T) @ B.T
    _known_slip(
        got,
        [
            (base + update, "the update without its scale", "multiply B (A x) by alpha / r."),
            (base + (r / alpha) * update, "the scale upside down (r / alpha)", "alpha / r."),
            (base + alpha * update, "scaling by alpha alone", "the scale is alpha / r."),
            (base, "the frozen layer alone", "add (alpha / r) * B (A x) to layer(x)."),
            ((alpha / r) * update, "the update alone", "add the frozen layer's output layer(x)."),
            (
                x @ layer.weight.detach().T + (alpha / r) * update,
                "the update plus x @ W.T without the bias",
                "call layer(x): it adds the bias.",
            ),
        ],
        1e-5,
    )
    _wrong(
        f"Your output differs from peft's by up to {(got - expected).abs().max():.3g}.",
        "layer(x) + (alpha / r) * (x @ A.T) @ B.T.",
    )


_NF4_SIGNATURE = "nf4_round_trip(weight, code)"


def _nf4_weight() -> Any:
    """Roughly normal weights with a few large ones, like a pretrained matrix: blocks differ."""
    import torch

    gen = torch.Generator().manual_seed(2104)
    weight = torch.randn(96, 128, generator=gen) * 0.02
    outliers = torch.rand(96, 128, generator=gen) < 0.01
    return torch.where(outliers, weight * 6, weight)


def _nearest(values: Any, code: Any) -> Any:
    return (values.unsqueeze(-1) - code).abs().argmin(dim=-1)


def _nf4_slip(weight: Any, code: Any, blocksize: int, by_column: bool = False) -> Any:
    """NF4 with another block size, or with blocks running down the columns."""
    source = weight.T.contiguous() if by_column else weight
    blocks = source.reshape(-1, blocksize)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    restored = (code[_nearest(blocks / absmax, code)] * absmax).reshape(source.shape)
    return restored.T if by_column else restored


def check_03_nf4(answer: Callable[..., Any] | None) -> Checked:
    """Your NF4 round trip, ``nf4_round_trip(weight, code) -> dequantized weight``, against
    bitsandbytes.

    Verifies, on a fresh 96 x 128 matrix with a few outliers, that your dequantized weights equal
    ``bitsandbytes.functional.dequantize_4bit(quantize_4bit(weight, blocksize=64, "nf4"))``
    within 1e-6. One absmax for the whole tensor, another block size, blocks down the columns,
    indices returned instead of weights, and forgetting to multiply by absmax get their own hint.
    """
    if answer is None:
        return _not_answered(
            "def nf4_round_trip(weight, code): blocks of 64, / absmax, nearest level, * absmax."
        )

    import torch

    fn = _callable(answer, _NF4_SIGNATURE)
    weight, code = _nf4_weight(), nf4_code_book()
    expected = dequantize(*quantize(weight))
    got = _call(fn, (weight.clone(), code.clone()), "a 96 x 128 weight matrix")
    if isinstance(got, torch.Tensor) and not got.is_floating_point():
        _wrong(
            "Your function returned integers: the 4-bit indices, not the weights they stand for.",
            "dequantize: code[index] * absmax, reshaped to weight.shape.",
        )
    got = _tensor(got, expected, "nf4_round_trip", "reshape the result back to weight.shape.")
    if _same(got, expected, 1e-6):
        return _ok(f"your NF4 round trip equals bitsandbytes' on all {weight.numel()} weights.")
    blocks = weight.reshape(-1, BLOCKSIZE)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    index = _nearest(blocks / absmax, code)
    whole = weight.abs().max()
    _known_slip(
        got,
        [
            (
                code[_nearest(weight / whole, code)] * whole,
                "one absmax for the whole tensor",
                "one absmax per block of 64 consecutive weights: weight.reshape(-1, 64).",
            ),
            (
                code[index].reshape(weight.shape),
                "the code-book levels without the scale",
                "dequantize: multiply each level by its block's absmax.",
            ),
            (
                _nf4_slip(weight, code, 64, by_column=True),
                "blocks of 64 running down the columns",
                "blocks are 64 consecutive weights of the flattened (row-major) matrix.",
            ),
            *[
                (_nf4_slip(weight, code, size), f"blocks of {size}", "blocks of 64 weights.")
                for size in (32, 128)
            ],
        ],
        1e-6,
    )
    _wrong(
        f"Your weights differ from bitsandbytes' by up to {(got - expected).abs().max():.3g}.",
        "per block of 64: index = nearest level of w / absmax; restored = code[index] * absmax.",
    )
