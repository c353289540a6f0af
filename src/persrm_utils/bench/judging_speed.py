"""Judging throughput: the same pairs judged one at a time and batched, same model, greedy.

Batching pays when a decoding step is bound by moving weights (a GPU, or a big model), because
one batch shares each weight read across all its rows; on two busy CPU cores it barely does.
Greedy decoding makes both runs comparable pair by pair: :func:`throughput` reports whether the
completions and the verdicts came out identical. On a GPU, padded batches can use other kernels
than single rows, and a half-precision rounding difference can flip a rare token; that is
reported, not hidden.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from persrm_utils.judge.judging import judge_pairs
from persrm_utils.records import Exemplar, Pair


def throughput(
    loaded: Any,
    pairs: Sequence[Pair],
    by_id: dict[str, Exemplar],
    batch: int,
    max_new_tokens: int,
) -> dict[str, Any]:
    """Pairs per second at batch 1 and at ``batch``, their ratio, and whether outputs agree."""

    rates: dict[int, float] = {}
    outputs: dict[int, list[tuple[str, str | None]]] = {}
    for size in (1, batch):
        start = time.perf_counter()
        judged = judge_pairs(loaded.model, loaded.tokenizer, pairs, by_id, max_new_tokens,
                             model_name=f"bench-{size}", batch_size=size)  # fmt: skip
        rates[size] = len(pairs) / (time.perf_counter() - start)
        outputs[size] = [(j.completion, j.letter) for j in judged]
    one, many = outputs[1], outputs[batch]
    return {
        "pairs": len(pairs),
        "batch": batch,
        "max_new_tokens": max_new_tokens,
        "one_at_a_time_pairs_per_s": round(rates[1], 3),
        "batched_pairs_per_s": round(rates[batch], 3),
        "speedup": round(rates[batch] / rates[1], 3),
        "identical_completions": one == many,
        "identical_verdicts": [v for _, v in one] == [v for _, v in many],
        "differing_verdicts": sum(a[1] != b[1] for a, b in zip(one, many, strict=True)),
    }
