"""Stage 05 as functions: judge the held-out pairs with every model and baseline, then measure.

Every judge sees every pair in both A/B orders, so position bias cannot inflate accuracy, and an
invalid output counts as wrong. Predictions are saved with their rationales, one JSON line per
(model, pair, order), so any number on the results page can be traced to the texts behind it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from persrm_utils.errors import MissingInputsError
from persrm_utils.judge.judging import Judgement, judge_pairs
from persrm_utils.models.loader import load_model, release_memory
from persrm_utils.profiles import Profile
from persrm_utils.records import Exemplar, Pair, read_jsonl
from persrm_utils.train.sft import ADAPTER, load_with_adapter

BASE, SFT, GRPO = "base (zero-shot)", "SFT", "SFT + GRPO"


def eval_pairs(
    run_path: Path,
    splits: Sequence[str] = ("test", "seen_test"),
    max_pairs: int | None = None,
    max_seen_pairs: int | None = None,
) -> list[Pair]:
    """The held-out pairs: unseen test authors first, then the seen-author split.

    ``max_pairs`` caps each split (the first pairs in file order, which is seeded), to keep
    CPU runs short; ``max_seen_pairs`` caps the seen-author split on its own (the headline is
    the unseen authors, so that is where the pairs should go). Caps are on the results page.
    """
    out: list[Pair] = []
    for split in splits:
        pairs = read_jsonl(run_path / "pairs" / f"{split}.jsonl", Pair)
        cap = (max_seen_pairs or max_pairs) if split == "seen_test" else max_pairs
        out += pairs[:cap] if cap else pairs
    return out


def judge_with_adapters(
    profile: Profile,
    run_path: Path,
    pairs: Sequence[Pair],
    by_id: dict[str, Exemplar],
    batch_size: int = 8,
    k_zero: bool = True,
) -> dict[str, list[Judgement]]:
    """The base model zero-shot, the SFT adapter and the GRPO adapter, each in both orders.

    With ``k_zero`` the final model also judges every pair with *no* exemplars, which measures
    how much the exemplars contribute at all (the k = 0 point of the accuracy-vs-k plot).
    The base model judges :func:`zero_shot_pairs` (``profile.eval_zero_shot_pairs`` of the
    unseen-author pairs, or all): it is a reference point, and on a CPU every verdict costs
    about a second.

    One model is in memory at a time: each is dropped and its memory released before the next
    loads, or on the ``24gb`` profile three 7B copies would sit on the GPU together.
    """

    n = profile.max_completion_length
    prefix = profile.answer_prefix
    out: dict[str, list[Judgement]] = {}
    base = load_model(profile)
    out[BASE] = judge_pairs(base.model, base.tokenizer, zero_shot_pairs(profile, pairs), by_id, n,
                            f"{profile.model_name}:base", both_orders=True,
                            batch_size=batch_size, prefix=prefix)  # fmt: skip
    del base
    release_memory()
    for name, folder in ((SFT, "sft"), (GRPO, "grpo")):
        adapter = run_path / folder / ADAPTER
        if not adapter.exists():
            continue
        tuned = load_with_adapter(profile, adapter)
        tag = f"{profile.model_name}:{folder}:{run_path.name}"
        out[name] = judge_pairs(tuned.model, tuned.tokenizer, pairs, by_id, n, tag,
                                both_orders=True, batch_size=batch_size,
                                prefix=prefix)  # fmt: skip
        if name == GRPO and k_zero:  # the ablation is read on unseen authors only
            unseen = [p for p in pairs if p.split == "test"]
            out[f"{GRPO}, k=0"] = judge_pairs(tuned.model, tuned.tokenizer, unseen, by_id, n,
                                              tag, both_orders=True, batch_size=batch_size,
                                              k=0, prefix=prefix)  # fmt: skip
        del tuned
        release_memory()
    return out


def zero_shot_pairs(profile: Profile, pairs: Sequence[Pair]) -> list[Pair]:
    """The pairs the untrained base model judges: all, or a seeded draw of unseen-author ones.

    The draw keeps the pairs' order, so its negative types stay mixed as the test split deals
    them; the base model's table rows then carry their own (smaller) n.
    """
    cap = profile.eval_zero_shot_pairs
    if cap is None:
        return list(pairs)
    unseen = [i for i, p in enumerate(pairs) if p.split == "test"]
    keep = set(random.Random(profile.seed).sample(unseen, min(cap, len(unseen))))
    return [p for i, p in enumerate(pairs) if i in keep]


def predictions_records(judged: dict[str, list[Judgement]]) -> list[dict[str, Any]]:
    """Flat rows for ``eval/predictions.jsonl`` (model name added to each judgement)."""
    return [{"model": model, **j.to_dict()} for model, js in judged.items() for j in js]


def unseen_predictions(run_path: Path) -> pd.DataFrame:
    """Notebook 05's verdicts on unseen-author pairs (``pairs/test.jsonl``), as a frame.

    One row per model, pair and order of ``eval/predictions.jsonl`` (:func:`predictions_records`),
    with ``valid`` added (a bare A or B, as :func:`~persrm_utils.evaluate.metrics.predictions_frame`
    counts it); the seen-author pairs the file also holds are left out.
    """
    path = run_path / "eval" / "predictions.jsonl"
    if not path.is_file():
        raise MissingInputsError(
            f"{path} does not exist", "run notebook 05 (05_evaluation) of that run first."
        )
    unseen = {p.pair_id for p in read_jsonl(run_path / "pairs" / "test.jsonl", Pair)}
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    df = pd.DataFrame(rows)
    df = df[df["pair_id"].isin(unseen)].copy()
    df["valid"] = df["letter"].isin(["A", "B"])
    return df
