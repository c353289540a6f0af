"""The exercises of notebook 04 (GRPO): each check recomputes the answer itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from persrm_utils.judge.format import parse_verdict
from persrm_utils.train.rewards import advantages, correctness_reward, format_reward, group_signal

if TYPE_CHECKING:
    pass

from persrm_utils.classroom.checks import (
    GROUP_04,
    REWARDS_04,
    Checked,
    _not_answered,
    _number,
    _ok,
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
