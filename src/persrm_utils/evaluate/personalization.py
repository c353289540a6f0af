"""Does the judge read the person? The exemplar effect and the user-swap test of one run.

Two figures, measured for the final generative judge (and the SFT judge before GRPO, when the
profile asks) and for the baselines that can take them:

* the **exemplar effect**: accuracy on the unseen-author pairs with the profile's exemplars minus
  accuracy on the same pairs with none (k = 0), with a paired pair-level interval
  (:func:`~persrm_utils.evaluate.metrics.exemplar_effect`);
* the **user-swap test** (:mod:`persrm_utils.data.user_swap`): two real texts of two unseen
  authors, judged with each author's exemplars, no opening shown; 0.5 exactly for a judge that
  ignores the exemplars, and the share of items right under both users
  (:func:`~persrm_utils.evaluate.metrics.user_swap_summary`);
* with ``profile.eval_cross_author_pairs``, the **cross-author set**
  (:mod:`persrm_utils.data.cross_author_set`): more unseen cross_author pairs than the test
  split deals, each with and without its opening, judged by the final judge with its exemplars
  and with none, beside character n-grams and the Bradley-Terry RM (paired differences). The
  test split's own exemplar effect is read on pairs whose opening often decides; this set shows
  how much the person counts when it cannot.

With ``profile.eval_likelihood`` the untrained base model's likelihood baseline
(:mod:`persrm_utils.evaluate.likelihood`) takes the user-swap test too: whether the model under
the judge carries the person before any training, which tells a judge that cannot learn to read
it from a model that has nothing to read.

Everything is written next to notebook 05's other files (``eval/personalization.json`` and
``eval/personalization_predictions.jsonl``); the pairs and predictions of the main evaluation
are left as they are.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from persrm_utils.data.cross_author_set import FORMS, unseen_cross_author_set
from persrm_utils.data.user_swap import unseen_user_swap_pairs
from persrm_utils.errors import DataError
from persrm_utils.evaluate.baselines import bt_baseline, stylometric_baseline
from persrm_utils.evaluate.held_out import GRPO, SFT, unseen_predictions
from persrm_utils.evaluate.likelihood import LIKELIHOOD_NAME, likelihood_baseline
from persrm_utils.evaluate.metrics import (
    accuracy_difference,
    accuracy_table,
    exemplar_effect,
    predictions_frame,
    user_swap_difference,
    user_swap_summary,
)
from persrm_utils.judge.judging import Judgement, judge_pairs
from persrm_utils.models.loader import release_memory
from persrm_utils.profiles import Profile
from persrm_utils.records import Exemplar, Pair, read_jsonl
from persrm_utils.train.sft import ADAPTER, load_with_adapter

NGRAMS, BT = "stylometric (char n-grams)", "Bradley-Terry RM"
#: The suffix of the cross-author set's verdicts in ``eval/personalization_predictions.jsonl``.
CROSS_SET = "cross-author set"


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in dict(row).items()
    }


def _effect(judged: Sequence[Judgement], blind: Sequence[Judgement], pairs: Sequence[Pair]):
    return _clean(
        exemplar_effect(predictions_frame(judged, pairs, "k"), predictions_frame(blind, pairs, "0"))
    )


def _swap(judged: Sequence[Judgement], swap_pairs: Sequence[Pair]) -> dict[str, Any]:
    return _clean(user_swap_summary(predictions_frame(judged, swap_pairs, "m"), swap_pairs))


def cross_author_set_summary(
    judged: Mapping[str, Sequence[Judgement]],
    set_pairs: Sequence[Pair],
    final: str,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows per form and judge of the cross-author set (:mod:`persrm_utils.data.cross_author_set`).

    ``judged`` maps a judge's name to its verdicts on ``set_pairs`` (both forms), and
    ``"<name>, k=0"`` to the same judge's verdicts with no exemplar, where it was run. Each row:
    accuracy and its interval (k = 0 runs get rows of their own, for the plot); with a k = 0
    run, the paired exemplar effect; for every other judge with exemplars, the final judge's
    accuracy minus this judge's, paired on the same pairs. Two forms of the same texts side by
    side say what the opening decides and what the person does.
    """
    rows: list[dict[str, Any]] = []
    for form in FORMS:
        part = [p for p in set_pairs if p.meta.get("form") == form]
        ids = {p.pair_id for p in part}

        def frame(name: str, ids: set[str] = ids, part: list[Pair] = part) -> pd.DataFrame:
            return predictions_frame([j for j in judged[name] if j.pair_id in ids], part, name)

        if not part or final not in judged:
            continue
        final_frame = frame(final)
        for name in [final, *(m for m in judged if m != final)]:
            with_k = frame(name)
            acc = accuracy_table(with_k, seed=seed).iloc[0]
            row: dict[str, Any] = {
                "form": form,
                "model": name,
                "n_pairs": int(acc["n_pairs"]),
                "accuracy": float(acc["accuracy"]),
                "ci_low": float(acc["ci_low"]),
                "ci_high": float(acc["ci_high"]),
                "exemplar_effect": None,
                "final_minus": None,
            }
            if f"{name}, k=0" in judged:
                row["exemplar_effect"] = _clean(
                    exemplar_effect(with_k, frame(f"{name}, k=0"), seed=seed)
                )
            if name != final and not name.endswith(", k=0"):  # final's k = 0: its effect
                row["final_minus"] = _clean(accuracy_difference(final_frame, with_k, seed=seed))
            rows.append(_clean(row))
    return rows


def cross_author_set_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The cross-author set's rows for reading: one line per form and judge, intervals inline."""

    def interval(part: Mapping[str, Any] | None, key: str) -> str:
        if not part:
            return ""
        return f"{part[key]:+.3f} [{part['ci_low']:+.3f}, {part['ci_high']:+.3f}]"

    return pd.DataFrame(
        [
            {
                "form": r["form"],
                "judge": r["model"],
                "pairs": r["n_pairs"],
                "accuracy [95% CI]": f"{r['accuracy']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                "exemplar effect": interval(r.get("exemplar_effect"), "effect"),
                "final judge minus this": interval(r.get("final_minus"), "difference"),
            }
            for r in rows
        ]
    )


def measure_personalization(
    profile: Profile,
    run_path: Path,
    pairs: Sequence[Pair],
    by_id: Mapping[str, Exemplar],
    judged: Mapping[str, Sequence[Judgement]],
    n_items: int,
    bt: tuple[Any, Any] | None = None,
    batch_size: int = 8,
) -> tuple[dict[str, Any], dict[str, list[Judgement]], list[Pair]]:
    """(summary, extra judgements by model, user-swap pairs) for one run's evaluation.

    ``judged`` is notebook 05's dict of judgements (the final judge's ``"…, k=0"`` run included);
    ``bt`` the Bradley-Terry reward model and tokenizer when it was trained. The final judge is
    SFT + GRPO when its adapter exists, else SFT; it is reloaded to judge the user-swap items.
    With ``profile.eval_user_swap_sft`` the SFT judge is measured too when GRPO followed it
    (its exemplar effect only where a ``"SFT, k=0"`` run is in ``judged``): a run then shows
    whether GRPO kept, raised or lost what SFT had learned to read. The summary's ``seconds``
    say what each user-swap measurement cost (a judge's includes loading its adapter).
    """
    unseen = [p for p in pairs if p.split == "test"]
    exemplars = list(by_id.values())
    swap_pairs, splits = unseen_user_swap_pairs(
        exemplars, n_items, profile.max_exemplars, profile.seed
    )
    extra: dict[str, list[Judgement]] = {}
    models: dict[str, dict[str, Any]] = {}
    # seconds per measurement, by the key of ``extra``: the cell's total alone cannot say
    # what the likelihood or a second judge costs a profile's time budget
    seconds: dict[str, float] = {}
    clock = time.perf_counter
    final = GRPO if (run_path / "grpo" / ADAPTER).exists() else SFT
    # the SFT judge too, when GRPO followed it and the profile asks: did GRPO keep what SFT read?
    tuned_judges = [SFT, final] if final == GRPO and profile.eval_user_swap_sft else [final]
    test_ids = {p.pair_id for p in unseen}
    set_pairs, set_splits = (
        unseen_cross_author_set(
            exemplars, profile.eval_cross_author_pairs, profile.max_exemplars, profile.seed
        )
        if profile.eval_cross_author_pairs
        else ([], ())
    )
    for name in tuned_judges:
        if name not in judged:
            continue
        with_k = [j for j in judged[name] if j.pair_id in test_ids]
        blind = judged.get(f"{name}, k=0")
        row: dict[str, Any] = {"exemplar_effect": _effect(with_k, blind, unseen) if blind else None}
        started = clock()
        tuned = load_with_adapter(profile, run_path / ("grpo" if name == GRPO else "sft") / ADAPTER)
        extra[f"{name}, user-swap"] = judge_pairs(
            tuned.model, tuned.tokenizer, swap_pairs, dict(by_id),
            profile.max_completion_length, f"{profile.model_name}:{name}:user-swap",
            both_orders=True, batch_size=batch_size, prefix=profile.answer_prefix,
        )  # fmt: skip
        seconds[f"{name}, user-swap"] = round(clock() - started, 1)  # the adapter's load too
        if name == final and profile.eval_likelihood:
            started = clock()
            with tuned.model.disable_adapter():  # the base model, before any of our training
                extra[f"{LIKELIHOOD_NAME}, user-swap"] = likelihood_baseline(
                    tuned.model, tuned.tokenizer, swap_pairs, by_id, batch_size=4
                )  # whole-sequence logits over the vocabulary: smaller batches than judging
            seconds[f"{LIKELIHOOD_NAME}, user-swap"] = round(clock() - started, 1)
        if name == final and set_pairs:  # both forms, with the exemplars and with none
            started = clock()
            for suffix, k in ((CROSS_SET, None), (f"{CROSS_SET}, k=0", 0)):
                extra[f"{name}, {suffix}"] = judge_pairs(
                    tuned.model, tuned.tokenizer, set_pairs, dict(by_id),
                    profile.max_completion_length, f"{profile.model_name}:{name}:{CROSS_SET}",
                    both_orders=True, batch_size=batch_size, k=k, prefix=profile.answer_prefix,
                )  # fmt: skip
            seconds[f"{name}, {CROSS_SET}"] = round(clock() - started, 1)
        del tuned  # one judge in memory at a time (a 7B one on 24gb)
        release_memory()
        row["user_swap"] = _swap(extra[f"{name}, user-swap"], swap_pairs)
        models[name] = row
    ngrams_k = stylometric_baseline(unseen, by_id)
    extra[f"{NGRAMS}, k=0"] = stylometric_baseline(unseen, by_id, k=0)
    extra[f"{NGRAMS}, user-swap"] = stylometric_baseline(swap_pairs, by_id)
    models[NGRAMS] = {
        "exemplar_effect": _effect(ngrams_k, extra[f"{NGRAMS}, k=0"], unseen),
        "user_swap": _swap(extra[f"{NGRAMS}, user-swap"], swap_pairs),
    }
    if f"{LIKELIHOOD_NAME}, user-swap" in extra:
        models[LIKELIHOOD_NAME] = {
            "exemplar_effect": None,  # the test pairs' openings belong to one text: not asked
            "user_swap": _swap(extra[f"{LIKELIHOOD_NAME}, user-swap"], swap_pairs),
        }
    if bt is not None and BT in judged:
        model, tokenizer = bt
        bt_k = [j for j in judged[BT] if j.pair_id in {p.pair_id for p in unseen}]
        started = clock()
        extra[f"{BT}, k=0"] = bt_baseline(model, tokenizer, unseen, by_id, batch_size=4, k=0)
        extra[f"{BT}, user-swap"] = bt_baseline(model, tokenizer, swap_pairs, by_id, batch_size=4)
        models[BT] = {
            "exemplar_effect": _effect(bt_k, extra[f"{BT}, k=0"], unseen),
            "user_swap": _swap(extra[f"{BT}, user-swap"], swap_pairs),
        }
        seconds[f"{BT}, k=0 and user-swap"] = round(clock() - started, 1)
    cross_set = None
    if set_pairs and f"{final}, {CROSS_SET}" in extra:
        extra[f"{NGRAMS}, {CROSS_SET}"] = stylometric_baseline(set_pairs, by_id)
        if bt is not None:
            started = clock()
            for suffix, k in ((CROSS_SET, None), (f"{CROSS_SET}, k=0", 0)):
                extra[f"{BT}, {suffix}"] = bt_baseline(
                    bt[0], bt[1], set_pairs, by_id, batch_size=4, k=k
                )
            seconds[f"{BT}, {CROSS_SET}"] = round(clock() - started, 1)
        named = {
            key.replace(f", {CROSS_SET}", ""): js
            for key, js in extra.items()
            if f", {CROSS_SET}" in key
        }
        cross_set = {
            "items": len(set_pairs) // 2,
            "splits": list(set_splits),
            "k": profile.max_exemplars,
            "rows": cross_author_set_summary(named, set_pairs, final, profile.seed),
        }
    summary = {
        "user_swap_items": len(swap_pairs) // 2,
        "user_swap_splits": list(splits),
        "unseen_pairs": len(unseen),
        "final": final,
        "models": models,
        "cross_author_set": cross_set,
        "seconds": seconds,
    }
    return summary, extra, swap_pairs


def read_user_swap_judgements(run_path: Path, model: str) -> list[Judgement]:
    """One model's user-swap verdicts from a run's ``eval/personalization_predictions.jsonl``."""
    path = run_path / "eval" / "personalization_predictions.jsonl"
    if not path.exists():
        raise DataError(
            f"{path} does not exist",
            "run notebook 05 (05_evaluation) of that run first.",
        )
    name = f"{model}, user-swap"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    picked = [r for r in rows if r.get("model") == name]
    if not picked:
        found = sorted({str(r.get("model", "")).removesuffix(", user-swap") for r in rows
                        if str(r.get("model", "")).endswith(", user-swap")})  # fmt: skip
        raise DataError(
            f"{path} has no user-swap verdicts of model '{model}'",
            f"pick one of: {', '.join(found) or 'none'}.",
            field="model",
        )
    fields = ("pair_id", "negative_type", "swap", "label", "letter", "reason")
    return [Judgement(**{f: r.get(f) for f in fields}, completion=r.get("completion", ""))
            for r in picked]  # fmt: skip


def compare_user_swap(
    run_x: Path, model_x: str, run_y: Path, model_y: str, profile: Profile
) -> dict[str, Any]:
    """User-swap accuracy of ``model_x`` in ``run_x`` minus ``model_y`` in ``run_y``, paired.

    Two runs of the same data (``profile``: the corpus, authors, texts, k and seed; the
    recipe may differ) judge the same user-swap items in notebook 05, so whether a change of
    recipe moved the figure is one paired interval over items
    (:func:`~persrm_utils.evaluate.metrics.user_swap_difference`). The items are rebuilt from
    ``run_x``'s exemplars; ``run_y`` must have judged the same ones.
    """
    x = read_user_swap_judgements(run_x, model_x)
    y = read_user_swap_judgements(run_y, model_y)
    exemplars = read_jsonl(run_x / "exemplars.jsonl", Exemplar)
    swap_pairs, _ = unseen_user_swap_pairs(
        exemplars, profile.eval_user_swap_items, profile.max_exemplars, profile.seed
    )
    return _clean(
        user_swap_difference(
            predictions_frame(x, swap_pairs, model_x),
            predictions_frame(y, swap_pairs, model_y),
            swap_pairs,
        )
    )


def exemplar_effect_by_type(run_path: Path, model: str = "SFT + GRPO") -> pd.DataFrame:
    """The exemplar effect of ``model`` per negative type, from a run's ``eval/predictions.jsonl``.

    Notebook 05 judges the unseen pairs once with the exemplars and once with none
    (``"<model>, k=0"``) and reports one paired effect over all of them. One figure can hide
    two that pull apart: in run cpu-long-c the exemplar raised cross_author (+0.059) and sank
    style_mimic (-0.657; the mimic is made of the exemplar's own words), for -0.183 overall.
    One row per negative type, then ``all``: pairs, accuracy with and without the exemplars,
    the effect and its paired 95% interval.
    """
    rows = unseen_predictions(run_path)
    blind_name = f"{model}, k=0"
    if blind_name not in set(rows["model"]):
        ablated = sorted(m.removesuffix(", k=0") for m in set(rows["model"]) if m.endswith(", k=0"))
        raise DataError(
            f"{run_path / 'eval' / 'predictions.jsonl'} has no verdicts of '{blind_name}'",
            "run notebook 05 with its k = 0 ablation, and name a model it ablated "
            f"(found: {', '.join(ablated) or 'none'}).",
            field="model",
        )
    judged, blind = rows[rows["model"] == model], rows[rows["model"] == blind_name]
    parts = [(kind, judged[judged["negative_type"] == kind], part)
             for kind, part in blind.groupby("negative_type")]  # fmt: skip
    parts.append(("all", judged, blind))
    return pd.DataFrame([{"negative_type": kind, **exemplar_effect(j, b)} for kind, j, b in parts])
