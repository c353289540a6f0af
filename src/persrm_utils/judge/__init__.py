"""The judge's prompt and answer format, running a judge over pairs, and what its verdicts say
about it.

The names below are what the notebooks use; everything else is in the modules of this package.
"""

from persrm_utils.judge.diagnosis import diagnose, personalization_message
from persrm_utils.judge.format import (
    NO_EXEMPLARS,
    QUESTION,
    build_messages,
    parse_verdict,
    responses,
)
from persrm_utils.judge.judging import Judgement, judge_pairs, summarize

__all__ = [
    "NO_EXEMPLARS",
    "QUESTION",
    "Judgement",
    "build_messages",
    "diagnose",
    "judge_pairs",
    "parse_verdict",
    "personalization_message",
    "responses",
    "summarize",
]
