"""GRPO rewards: pure functions with TRL's reward-function signature.

TRL calls each reward function with the batch's ``completions`` (for chat data, a list of
message lists) and every column of the dataset as keyword arguments (here: ``label``, the letter
of the real text), and expects one float per completion.

* :func:`correctness_reward`: +1 when the final verdict names the real text, -1 otherwise:
  RM-R1's correctness reward, used as the template because PersRM-R1's public code has no RL
  stage (docs/design.md §7). "Otherwise" includes no verdict, both letters, a verdict only
  inside ``<think>`` and a verdict with no reasoning at all: every way of not answering costs as
  much as answering wrong, so no shortcut pays.
* :func:`format_reward`: a small, graded bonus (at most 0.2) for the layout itself; this series'
  addition. It matters
  mostly at the start, when no completion in a group is correct and correctness alone would give
  every completion the same reward, hence no learning signal (see :func:`group_signal`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from persrm_utils.errors import ConfigError
from persrm_utils.judge.format import full_answer, parse_verdict
from persrm_utils.tags import ANSWER_OPEN, THINK_CLOSE, THINK_OPEN

FORMAT_MAX = 0.2


def completion_text(completion: Any) -> str:
    """The assistant's text, whether TRL passes a string or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list | tuple) and completion:
        last = completion[-1]
        return str(last.get("content", "")) if isinstance(last, dict) else str(last)
    return ""


def _answers(completions: Sequence[Any], answer_prefix: Sequence[str] | None) -> list[str]:
    """Each whole answer (:func:`~persrm_utils.judge.format.full_answer`): the harness-written
    prefix (a
    dataset column, when the profile has one: verdict-only judges continue
    ``<think></think><answer>[[``), what was generated, and the closing the harness adds."""
    texts = [completion_text(c) for c in completions]
    if answer_prefix is None:
        return texts
    return [full_answer(p, t) for p, t in zip(answer_prefix, texts, strict=True)]


def correctness_reward(
    completions: Sequence[Any],
    label: Sequence[str],
    require_reasoning: bool = True,
    answer_prefix: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[float]:
    """+1 for a valid, reasoned verdict equal to ``label``; -1 for anything else.

    ``require_reasoning=False`` is for the verdict-only budget (profile ``reasoning="none"``),
    where an empty ``<think>`` is the format itself and must not be punished.
    """
    out = []
    for text, gold in zip(_answers(completions, answer_prefix), label, strict=True):
        verdict = parse_verdict(text)
        reasoned = verdict.think is not None and not verdict.think_empty
        ok = verdict.letter == gold and (reasoned or not require_reasoning)
        out.append(1.0 if ok else -1.0)
    return out


def format_reward(
    completions: Sequence[Any],
    require_reasoning: bool = True,
    answer_prefix: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[float]:
    """Up to 0.2: 0.05 for opening the reasoning, 0.05 for closing it, 0.1 for the exact layout.

    Graded, so that a model which has only learned to open ``<think>`` already earns more than
    one that writes nothing useful: early in training that difference is the only signal. The
    exact layout needs non-empty reasoning unless ``require_reasoning`` is False.
    """
    out = []
    for text in _answers(completions, answer_prefix):
        score = 0.0
        if THINK_OPEN in text:
            score += 0.05
        if THINK_CLOSE in text and ANSWER_OPEN in text.split(THINK_CLOSE)[-1]:
            score += 0.05
        verdict = parse_verdict(text)
        if verdict.exact and (not verdict.think_empty or not require_reasoning):
            score += 0.1
        out.append(round(score, 4))
    return out


REWARD_FUNCS = (correctness_reward, format_reward)


def reward_funcs(reasoning: str = "full") -> tuple[Callable[..., list[float]], ...]:
    """The two rewards for a profile's reasoning budget, named as TRL logs them.

    With ``reasoning="none"`` the judge is trained to answer without reasoning, so a verdict with
    an empty ``<think>`` earns the full reward; otherwise (the default) it earns -1.
    """
    if reasoning != "none":
        return REWARD_FUNCS

    def correctness_reward(completions: Sequence[Any], label: Sequence[str], **kw: Any):
        return _correctness(
            completions, label, require_reasoning=False, answer_prefix=kw.get("answer_prefix")
        )

    def format_reward(completions: Sequence[Any], **kw: Any):
        return _format(completions, require_reasoning=False, answer_prefix=kw.get("answer_prefix"))

    return (correctness_reward, format_reward)


_correctness, _format = correctness_reward, format_reward


def group_signal(rewards: Sequence[float], group_size: int) -> dict[str, float]:
    """How much a batch of rewards can teach GRPO.

    GRPO's advantage is a completion's reward minus its group's mean (divided by the group's
    standard deviation). A group where every completion got the same reward has zero advantage
    everywhere, so it contributes no gradient at all. ``frac_reward_zero_std`` is the share of
    such groups; TRL logs the same number during training. Near 1.0, training is idle.
    """

    if group_size < 2 or len(rewards) % group_size:
        raise ConfigError(
            f"{len(rewards)} rewards do not split into groups of {group_size}",
            "pass the rewards of whole groups, in order, and a group size of at least 2",
        )
    groups = [rewards[i : i + group_size] for i in range(0, len(rewards), group_size)]
    stds = [statistics.pstdev(g) for g in groups]
    return {
        "groups": float(len(groups)),
        "mean_reward": float(statistics.fmean(rewards)),
        "mean_group_std": float(statistics.fmean(stds)),
        "frac_reward_zero_std": sum(s == 0 for s in stds) / len(stds),
    }


def advantages(rewards: Sequence[float], group_size: int) -> list[float]:
    """GRPO's group-relative advantages, (r - mean) / (std + 1e-4), for the worked example."""

    out: list[float] = []
    for i in range(0, len(rewards), group_size):
        group = rewards[i : i + group_size]
        mean, std = statistics.fmean(group), statistics.pstdev(group)
        out += [(r - mean) / (std + 1e-4) for r in group]
    return out
