"""Run a judge over pairs and score what it says: format validity and accuracy.

Batched, greedy and deterministic (left padding, through
:class:`~persrm_utils.generation.local.TransformersBackend`), so the same model and pairs always
give the same numbers. An output without a valid final verdict counts as wrong, never as skipped:
a judge that learns to say nothing must not look better for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from persrm_utils.generation.local import TransformersBackend
from persrm_utils.generation.requests import GenRequest
from persrm_utils.judge.format import build_messages, full_answer, label, parse_verdict
from persrm_utils.records import Exemplar, Pair


@dataclass
class Judgement:
    pair_id: str
    negative_type: str
    swap: bool
    label: str
    letter: str | None
    reason: str
    completion: str

    @property
    def correct(self) -> bool:
        return self.letter == self.label

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"correct": self.correct}


def judge_pairs(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Pair],
    by_id: dict[str, Exemplar],
    max_new_tokens: int,
    model_name: str,
    both_orders: bool = False,
    batch_size: int = 8,
    k: int | None = None,
    prefix: str = "",
) -> list[Judgement]:
    """The judge's verdict on every pair (in both A/B orders when ``both_orders``).

    ``k`` overrides how many of each pair's exemplars are shown (0: none, the ablation that
    measures how much the exemplars help at all). ``prefix`` is the start of the answer the
    harness writes (``profile.answer_prefix``: the verdict-only judge's fixed tags); the
    recorded completion and the parsed verdict include it.
    """

    backend = TransformersBackend(model, tokenizer, batch_size=batch_size, model_name=model_name)
    swaps = (False, True) if both_orders else (False,)
    todo = [(p, s) for p in pairs for s in swaps]
    requests = [
        GenRequest(
            build_messages(p, by_id, k=k, swap=s),
            max_new_tokens,
            meta={"pair_id": p.pair_id},
            prefix=prefix,
        )
        for p, s in todo
    ]
    results = backend.generate(requests)
    out = []
    for (pair, swap), res in zip(todo, results, strict=True):
        text = full_answer(prefix, res.text)
        verdict = parse_verdict(text)
        out.append(
            Judgement(
                pair_id=pair.pair_id,
                negative_type=pair.negative_type,
                swap=swap,
                label=label(pair, swap),
                letter=verdict.letter,
                reason=verdict.reason,
                completion=text,
            )
        )
    return out


def summarize(judgements: Sequence[Judgement]) -> dict[str, Any]:
    """Counts and rates: format validity, accuracy (invalid = wrong), and why outputs failed."""
    n = len(judgements)
    valid = sum(j.letter is not None for j in judgements)
    correct = sum(j.correct for j in judgements)
    return {
        "n": n,
        "valid_rate": valid / n if n else 0.0,
        "accuracy": correct / n if n else 0.0,
        "reasons": dict(Counter(j.reason for j in judgements)),
    }
