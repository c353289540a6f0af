"""The exercises of notebook 04 (GRPO): each check recomputes the answer itself."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from persrm_utils.by_hand.grpo_loss import clipped_surrogate
from persrm_utils.judge.format import parse_verdict
from persrm_utils.train.rewards import advantages, correctness_reward, format_reward, group_signal

if TYPE_CHECKING:
    pass

from persrm_utils.classroom.checks import (
    GROUP_04,
    REWARDS_04,
    Checked,
    _call,
    _callable,
    _known_slip,
    _not_answered,
    _number,
    _ok,
    _same,
    _tensor,
    _wrong,
)

# 04 · GRPO
# ----------------------------------------------------------------------------------------------


def check_04_warmup(answer: Sequence[float] | None) -> Checked:
    """Group-relative advantages of ``REWARDS_04`` (groups of ``GROUP_04``), computed by hand.

    Verifies each value, within 0.001, against ``rewards.advantages``: (reward - group mean) /
    (group population standard deviation + 1e-4).
    """
    if answer is None:
        return _not_answered("per group of 4: (r - mean) / (population std + 1e-4).")

    expected = advantages(REWARDS_04, GROUP_04)
    if isinstance(answer, str) or not isinstance(answer, Sequence) or len(answer) != len(expected):
        _wrong(
            f"Expected a list of {len(expected)} advantages, one per reward.",
            "compute one value per entry of REWARDS_04, in order.",
        )
    for i, (a, e) in enumerate(zip(answer, expected, strict=True)):
        value = _number(a, f"answer[{i}]")
        if abs(value - e) > 1e-3:
            group = i // GROUP_04
            _wrong(
                f"answer[{i}] is {value:.3f}, expected {e:.3f} (group {group + 1}).",
                "use the population std (statistics.pstdev), and each group's own mean.",
            )
    idle = [
        g // GROUP_04 + 1
        for g in range(0, len(expected), GROUP_04)
        if all(abs(a) < 1e-9 for a in expected[g : g + GROUP_04])
    ]
    return _ok(f"advantages match; group(s) {idle} have advantage 0 everywhere: no gradient.")


def check_04_core(answer: Sequence[str] | None) -> Checked:
    """Three reward hacks: outputs containing "[[A]]" that correctness_reward scores -1 for A.

    Verifies that each of at least three distinct strings contains "[[A]]" (a naive
    ``"[[A]]" in text`` check would pay it) and gets -1 from ``correctness_reward`` with label A.
    """
    if answer is None:
        return _not_answered("both letters, a verdict inside <think>, no reasoning at all...")

    if isinstance(answer, str) or not isinstance(answer, Sequence):
        _wrong("Expected a list of strings.", "answer = [hack_1, hack_2, hack_3].")
    hacks = list(answer)
    if len(set(hacks)) < 3 or not all(isinstance(h, str) for h in hacks):
        _wrong(
            f"Expected three or more different strings, got {len(set(map(str, hacks)))}.",
            "each hack should dodge the format in another way.",
        )
    for hack in hacks:
        if "[[A]]" not in hack:
            _wrong(
                f"{hack[:60]!r} has no [[A]], so no naive check would pay it anyway.",
                "a hack should look like an answer A to someone who only searches for [[A]].",
            )
    scores = correctness_reward(hacks, label=["A"] * len(hacks))
    for hack, score in zip(hacks, scores, strict=True):
        if score != -1.0:
            _wrong(
                f"{hack[:60]!r} gets {score:+.0f}: that is a right, reasoned answer, not a hack.",
                "break the format: hide the verdict, hedge, or skip the reasoning.",
            )
    dodges = sorted({_dodge(parse_verdict(h)) for h in hacks})
    return _ok(f"all {len(hacks)} hacks score -1 ({', '.join(dodges)}).")


def _dodge(verdict: Any) -> str:
    """How a hack lost its reward: the parser's reason, or the missing reasoning."""
    if verdict.reason != "ok":
        return verdict.reason
    return "no reasoning" if verdict.think is None else "empty reasoning"


def check_04_stretch(answer: Sequence[str] | None) -> Checked:
    """A group of four wrong verdicts (label A) that still gives GRPO a learning signal.

    Verifies that all four completions get -1 from ``correctness_reward`` and that their total
    rewards (correctness + ``format_reward``) are four different numbers, so the group's reward
    std is not zero and every completion gets its own advantage.
    """
    if answer is None:
        return _not_answered("4 wrong completions whose format_reward values all differ.")

    if isinstance(answer, str) or not isinstance(answer, Sequence) or len(answer) != GROUP_04:
        _wrong(
            f"Expected a list of {GROUP_04} completions (one group).", "answer = [c1, c2, c3, c4]."
        )
    texts = [str(t) for t in answer]
    correct = correctness_reward(texts, label=["A"] * GROUP_04)
    fmt = format_reward(texts)
    if any(c != -1.0 for c in correct):
        i = next(i for i, c in enumerate(correct) if c != -1.0)
        _wrong(
            f"Completion {i} is a right answer (+1): every completion must be wrong.",
            "answer B, or give no valid verdict at all.",
        )
    totals = [round(c + f, 4) for c, f in zip(correct, fmt, strict=True)]
    if len(set(totals)) < GROUP_04:
        _wrong(
            f"Total rewards {totals}: some are equal (format rewards {fmt}).",
            "format_reward pays 0.05 for <think>, 0.05 for an answer tag after </think> and "
            "0.1 for the exact layout, whatever the letter.",
        )
    adv = [round(a, 2) for a in advantages(totals, GROUP_04)]
    zero = group_signal(totals, GROUP_04)["frac_reward_zero_std"]
    return _ok(f"totals {totals}, advantages {adv}, frac_reward_zero_std {zero:.0f}.")


# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# By hand: the clipped surrogate, checked against the package on fresh tensors
# ----------------------------------------------------------------------------------------------

_SURROGATE_SIGNATURE = "surrogate(logp_new, logp_old, advantages, eps_low, eps_high)"
_ADVANTAGE_SHAPE = (
    "advantages holds one number per completion: advantages[:, None] spreads it over the tokens."
)


def _surrogate_inputs() -> tuple[Any, Any, Any, float, float]:
    """4 completions x 6 tokens whose ratios fall below, inside and above [1 - 0.2, 1 + 0.28],
    with advantages of both signs; eps_high differs from eps_low, as in DAPO's clip-higher."""
    import torch

    gen = torch.Generator().manual_seed(2105)
    logp_old = -3 * torch.rand(4, 6, generator=gen)
    ratio = 0.5 + 1.1 * torch.rand(4, 6, generator=gen)  # 0.5 .. 1.6
    logp_new = (logp_old + ratio.log()).requires_grad_(True)
    advantages = torch.tensor([1.0, -0.7, 0.4, -1.3])
    return logp_new, logp_old, advantages, 0.2, 0.28


def check_04_surrogate(answer: Callable[..., Any] | None) -> Checked:
    """Your clipped surrogate, ``surrogate(logp_new, logp_old, advantages, eps_low, eps_high)``,
    per token, against the package's.

    Verifies, on fresh 4 x 6 log-probabilities with ratios on both sides of the clip range and
    advantages of both signs, that your per-token loss equals ``by_hand.clipped_surrogate`` (TRL
    1.14's formula) within 1e-5, and that its gradient with respect to ``logp_new`` does too (a
    loss the optimiser cannot differentiate trains nothing). max instead of min, no clipping, only
    the clipped term, a symmetric clip, the wrong sign, and a ratio without exp get their own hint.
    """
    if answer is None:
        return _not_answered(
            "def surrogate(logp_new, logp_old, advantages, eps_low, eps_high): "
            "-min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)."
        )

    import torch

    fn = _callable(answer, _SURROGATE_SIGNATURE)
    logp_new, logp_old, adv, low, high = _surrogate_inputs()
    expected = clipped_surrogate(logp_new, logp_old, adv, low, high)
    result = _call(
        fn, (logp_new, logp_old, adv, low, high), "4 completions x 6 tokens", _ADVANTAGE_SHAPE
    )
    got = _tensor(result, expected, "surrogate", _ADVANTAGE_SHAPE)
    if _same(got, expected, 1e-5):
        if not result.requires_grad:
            _wrong(
                "Your loss has the right values but no gradient with respect to logp_new.",
                "stay in torch: no .item(), .detach(), .numpy() or torch.tensor(...) on the way.",
            )
        (grad,) = torch.autograd.grad(result.sum(), logp_new)
        (want,) = torch.autograd.grad(expected.sum(), logp_new)
        if not _same(grad, want, 1e-5):
            _wrong(
                "Your loss has the right values but not the right gradient.",
                "compute the ratio from logp_new with torch.exp and clip it with torch.clamp.",
            )
        unclipped = -(torch.exp(logp_new - logp_old) * adv[:, None])
        clipped = int((~torch.isclose(expected, unclipped)).sum())
        return _ok(
            f"your surrogate equals the package's, values and gradient, on all {expected.numel()} "
            f"tokens ({clipped} of them clipped: no gradient)."
        )
    with torch.no_grad():
        ratio = torch.exp(logp_new - logp_old)
        a = adv[:, None]
        clip = torch.clamp(ratio, 1 - low, 1 + high)
        _known_slip(
            got,
            [
                (
                    -torch.max(ratio * a, clip * a),
                    "max instead of min",
                    "-min(...): the "
                    "pessimistic of the two terms, so a token stops gaining once it is clipped.",
                ),
                (-ratio * a, "the unclipped term alone", "take the min with the clipped term."),
                (-clip * a, "the clipped term alone", "take the min of ratio * A and clip * A."),
                (
                    -torch.min(ratio * a, torch.clamp(ratio, 1 - low, 1 + low) * a),
                    "clipping at 1 + eps_low on both sides",
                    "the upper bound is 1 + eps_high.",
                ),
                (
                    torch.min(ratio * a, clip * a),
                    "the objective, not the loss",
                    "the loss is minus the objective: the optimiser minimises it.",
                ),
                (
                    -torch.min((ratio.log()) * a, torch.clamp(ratio.log(), 1 - low, 1 + high) * a),
                    "a ratio without exp",
                    "ratio = torch.exp(logp_new - logp_old).",
                ),
                (
                    -torch.min(1 / ratio * a, torch.clamp(1 / ratio, 1 - low, 1 + high) * a),
                    "the ratio upside down (old over new)",
                    "ratio = torch.exp(logp_new - logp_old).",
                ),
            ],
            1e-5,
        )
    _wrong(
        f"Your loss differs from the package's by up to {(got - expected).abs().max():.3g}.",
        "ratio = exp(logp_new - logp_old); -min(ratio * A, clamp(ratio, 1 - eps_low, 1 + eps_high)"
        " * A), with A = advantages[:, None].",
    )
