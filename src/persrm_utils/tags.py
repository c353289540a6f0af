"""The judge's answer tags, and what the harness writes before a verdict-only answer.

They live on the ground floor because a profile (``Profile.answer_prefix``) needs them as much
as the judge's format (:mod:`persrm_utils.judge.format`) does, and a profile must not import the
judge.
"""

from __future__ import annotations

THINK_OPEN = "<think>"


THINK_CLOSE = "</think>"


ANSWER_OPEN = "<answer>"


ANSWER_CLOSE = "</answer>"


#: What the harness writes around a verdict-only answer (profile ``reasoning="none"``): the judge
#: writes the letter, one token, and ``VERDICT_PREFIX + "A" + VERDICT_SUFFIX`` is exactly
#: ``format_answer("", "A")``. Why the harness and not the model writes the tags: trained on all
#: 18 tokens of the answer, a 135M judge spends its first steps learning constant tags, and
#: Adam's running estimate of the squared gradient (``beta2=0.999``, a memory of hundreds of
#: steps) stays large from those steps, so every later update of the one token that carries the
#: decision is many times smaller than the learning rate suggests (our reading of the loss
#: curves in RESULTS.md: the loss sat at a coin flip on the letter in every such run).
VERDICT_PREFIX = f"{THINK_OPEN}\n\n{THINK_CLOSE}\n{ANSWER_OPEN}[["


VERDICT_SUFFIX = f"]]{ANSWER_CLOSE}"


def answer_prefix(reasoning: str, prefill: bool = True) -> str:
    """The text every answer starts with, written by the harness: :data:`VERDICT_PREFIX` for the
    verdict-only budget (unless ``prefill`` is False), nothing when the judge reasons first."""
    return VERDICT_PREFIX if reasoning == "none" and prefill else ""
