"""The base model's likelihood as a baseline: does the model under the judge read the person?

The scores are :func:`persrm_utils.judge.likelihood.likelihood_scores`: each text's pointwise
mutual information with the exemplars, log p(text | exemplars) - log p(text | no exemplars), in
nats. Here they become verdicts in the same tables as the judges: the higher PMI wins, and like
every score-based baseline (:mod:`persrm_utils.evaluate.baselines`) each text is scored on its
own, so the verdict cannot depend on where the text is shown (swap consistency 1.0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from persrm_utils.evaluate.baselines import _both_orders
from persrm_utils.judge.judging import Judgement
from persrm_utils.judge.likelihood import likelihood_scores
from persrm_utils.records import Exemplar, Pair

#: How the baseline is named in tables and verdict files.
LIKELIHOOD_NAME = "LM likelihood (no training)"


def likelihood_baseline(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Pair],
    by_id: Mapping[str, Exemplar],
    k: int | None = None,
    batch_size: int = 8,
) -> list[Judgement]:
    """Every pair in both orders: the text whose likelihood the exemplars raise more wins.

    Pass the *base* model (for a PEFT judge, call it inside ``model.disable_adapter()``): the
    question is what the language model knew before any of our training. With no exemplar shown
    (k = 0, or a pair without exemplars) both PMIs are 0 and the tie is broken by a hash of the
    texts, as in every baseline: a coin. The completion holds both PMIs, e.g.
    ``"pmi A=+3.21 B=-0.40"``.
    """
    scores = likelihood_scores(model, tokenizer, pairs, by_id, k, batch_size)
    out = []
    for pair, score in zip(pairs, scores, strict=True):
        out += _both_orders(pair, score, "pmi", "+.2f")
    return out
