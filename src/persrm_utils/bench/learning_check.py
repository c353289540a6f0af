"""Part 3 of the GPU check: does the ``cpu`` recipe learn when it is given more data and steps?

The run is built from the profile system and the same stage functions as notebooks 01-05, so a
change to the ``cpu`` profile's recipe reaches it without touching this file:
``get_profile("cpu", **scale)`` where ``scale`` only asks for more (authors, texts, steps, all
held-out pairs); exemplars and pairs from :func:`~persrm_utils.data.offline.offline_pairs`;
traces from :func:`~persrm_utils.train.commands.make_traces`;
:func:`~persrm_utils.train.sft.train_sft`;
:func:`~persrm_utils.train.grpo.train_grpo` with :func:`~persrm_utils.train.rewards.reward_funcs`;
and the judge scored with :mod:`persrm_utils.evaluate.metrics` (position-debiased accuracy, pair
bootstrap 95% CI) on unseen authors in both A/B orders, before SFT, after SFT and after GRPO.
With the ``sft_user_swap_*`` fields in the scale, SFT's user-swap items are chosen as in notebook
03 (:func:`~persrm_utils.train.user_swap_items.choose_user_swap_items`, the untrained model as
teacher) and recorded. After SFT and after GRPO it also reports notebook 05's personalization
figures: the exemplar effect (the same pairs at k = 0, paired interval) and the user-swap test
(:mod:`persrm_utils.data.user_swap`), beside the character n-gram baseline on the same items,
and, with ``eval_cross_author_pairs`` in the scale, the cross-author set with and without the
opening (:mod:`persrm_utils.data.cross_author_set`).

Training stops at a deadline computed from the part's cap, keeping time for the evaluations
after it; the steps done and whether the cap cut them short are recorded. The learning run uses
plain transformers + PEFT, so its figures do not depend on Unsloth (part 2 compares the two).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persrm_utils.bench.timebox import Deadline, StepClock
from persrm_utils.data.cross_author_set import unseen_cross_author_set
from persrm_utils.data.offline import offline_pairs
from persrm_utils.data.user_swap import unseen_user_swap_pairs
from persrm_utils.errors import DataError
from persrm_utils.evaluate.baselines import stylometric_baseline
from persrm_utils.evaluate.held_out import eval_pairs
from persrm_utils.evaluate.metrics import (
    accuracy_table,
    exemplar_effect,
    predictions_frame,
    user_swap_summary,
)
from persrm_utils.evaluate.personalization import cross_author_set_summary
from persrm_utils.judge.judging import judge_pairs
from persrm_utils.models.loader import load_model
from persrm_utils.models.smollm2 import find_smollm2
from persrm_utils.paths import find_c50_root
from persrm_utils.profiles import get_profile
from persrm_utils.train.commands import grpo_pairs, load_stage_inputs, make_traces, sft_pairs
from persrm_utils.train.grpo import grpo_rows, load_policy, preflight, train_grpo
from persrm_utils.train.rewards import reward_funcs
from persrm_utils.train.sft import ADAPTER, load_with_adapter, sft_steps, train_sft
from persrm_utils.train.traces import to_sft_rows
from persrm_utils.train.user_swap_items import choose_user_swap_items

if TYPE_CHECKING:
    from persrm_utils.bench.check_options import CheckOptions, Recorder
    from persrm_utils.profiles import Profile
    from persrm_utils.records import Exemplar, Pair

#: What the learning run reports per model, from
#: :func:`persrm_utils.evaluate.metrics.accuracy_table`.
ROW_KEYS = ("n_pairs", "accuracy", "ci_low", "ci_high", "swap_consistency", "parse_failure_rate")
MIN_UNSEEN_PAIRS = 200


def _clean(value: Any) -> Any:
    """JSON-safe numbers: NaN becomes None, floats are rounded to 4 places."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def score(
    loaded: Any,
    tag: str,
    pairs: Sequence[Pair],
    by_id: dict[str, Exemplar],
    profile: Profile,
    batch: int,
) -> dict[str, Any]:
    """Judge ``pairs`` in both orders; accuracy with its CI, and the seconds it took."""

    start = time.perf_counter()
    judged = judge_pairs(loaded.model, loaded.tokenizer, pairs, by_id,
                         profile.max_completion_length, tag, both_orders=True,
                         batch_size=batch, prefix=profile.answer_prefix)  # fmt: skip
    row = accuracy_table(predictions_frame(judged, pairs, tag), seed=profile.seed).iloc[0]
    out = {k: _clean(row[k]) for k in ROW_KEYS}
    return out | {"seconds": round(time.perf_counter() - start, 1)}


def personalization(
    loaded: Any,
    tag: str,
    pairs: Sequence[Pair],
    by_id: dict[str, Exemplar],
    profile: Profile,
    batch: int,
) -> dict[str, Any]:
    """Exemplar effect (``pairs`` again at k = 0, paired) and the user-swap test of one judge;
    with ``profile.eval_cross_author_pairs``, the cross-author set as notebook 05 measures it
    (:func:`~persrm_utils.evaluate.personalization.cross_author_set_summary`), beside n-grams."""

    start = time.perf_counter()
    kwargs = dict(both_orders=True, batch_size=batch, prefix=profile.answer_prefix)
    n = profile.max_completion_length
    with_k = judge_pairs(loaded.model, loaded.tokenizer, pairs, by_id, n, tag, **kwargs)
    blind = judge_pairs(loaded.model, loaded.tokenizer, pairs, by_id, n, tag, k=0, **kwargs)
    effect = exemplar_effect(
        predictions_frame(with_k, pairs, tag), predictions_frame(blind, pairs, tag),
        seed=profile.seed,
    )  # fmt: skip
    try:
        swap, _ = unseen_user_swap_pairs(list(by_id.values()), profile.eval_user_swap_items,
                                         profile.max_exemplars, profile.seed)  # fmt: skip
    except DataError as err:  # too few unseen authors for the user-swap test
        return {"exemplar_effect": {k: _clean(v) for k, v in effect.items()},
                "user_swap": f"not measured: {err}"}  # fmt: skip
    verdicts = judge_pairs(loaded.model, loaded.tokenizer, swap, by_id, n, tag, **kwargs)
    ngrams = stylometric_baseline(swap, by_id)
    cross: dict[str, Any] | str | None = None
    if profile.eval_cross_author_pairs:  # as notebook 05: with and without the opening, k and 0
        try:
            set_pairs, _ = unseen_cross_author_set(list(by_id.values()),
                                                   profile.eval_cross_author_pairs,
                                                   profile.max_exemplars, profile.seed)  # fmt: skip
        except DataError as err:
            cross = f"not measured: {err}"
        else:
            named = {
                tag: judge_pairs(loaded.model, loaded.tokenizer, set_pairs, by_id, n, tag,
                                 **kwargs),
                f"{tag}, k=0": judge_pairs(loaded.model, loaded.tokenizer, set_pairs, by_id, n,
                                           tag, k=0, **kwargs),
                "char n-grams": stylometric_baseline(set_pairs, by_id),
            }  # fmt: skip
            rows = cross_author_set_summary(named, set_pairs, tag, profile.seed)
            cross = {"items": len(set_pairs) // 2, "rows": _clean_rows(rows)}
    return {
        "exemplar_effect": {k: _clean(v) for k, v in effect.items()},
        "user_swap": {
            k: _clean(v)
            for k, v in user_swap_summary(predictions_frame(verdicts, swap, tag), swap).items()
        },
        "user_swap_char_ngrams": {
            k: _clean(v)
            for k, v in user_swap_summary(predictions_frame(ngrams, swap, "ngrams"), swap).items()
        },
        **({"cross_author_set": cross} if cross is not None else {}),
        "seconds": round(time.perf_counter() - start, 1),
    }


def _clean_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cross-author set's rows with every number rounded as the rest of the report."""

    def clean(value: Any) -> Any:
        return {k: clean(v) for k, v in value.items()} if isinstance(value, dict) else _clean(value)

    return [clean(row) for row in rows]


def _profile(opts: CheckOptions, rec: Recorder) -> tuple[Profile | None, Path | None]:

    if opts.dry_run:
        rec.note("dry run: the smoke profile (seed texts, tiny model), one step each")
        return get_profile("smoke", **opts.dry_scale), None
    c50, where = find_c50_root(opts.c50)
    if c50 is None:
        rec.skip(where)
        return None, None
    model, how = find_smollm2(opts.smollm2)
    if model is None:
        rec.skip(how)
        return None, None
    rec.note(f"C50 from {where}; SmolLM2 from {how}")
    return get_profile("cpu", **opts.scale, model_path=model, backend="transformers"), c50


def learning_part(opts: CheckOptions, rec: Recorder, deadline: Deadline) -> None:
    """Data, base accuracy, SFT, accuracy, GRPO, accuracy: each recorded as soon as known."""

    profile, c50 = _profile(opts, rec)
    if profile is None:
        return
    run = Path(opts.out) / "work" / "learning_run"
    data = offline_pairs(profile, c50_root=c50)
    data.save(run)
    train, _, by_id = load_stage_inputs(run)
    test = eval_pairs(run, splits=("test",), max_pairs=profile.eval_max_pairs)
    rec.set("profile", {"name": profile.name, "scale": opts.dry_scale if opts.dry_run
                        else opts.scale, "model": profile.model_name})  # fmt: skip
    rec.set("data", {**data.counts(), "unseen_pairs_judged": len(test),
                     "seconds": round(data.seconds, 1)})  # fmt: skip
    if not opts.dry_run and len(test) < MIN_UNSEEN_PAIRS:
        rec.note(f"only {len(test)} unseen-author pairs (< {MIN_UNSEEN_PAIRS}): raise "
                 "texts_per_author or n_test_authors in the scale")  # fmt: skip
    accuracy: dict[str, Any] = {}
    batch = 4 if opts.dry_run else opts.eval_batch

    base = load_model(profile)
    accuracy["base"] = score(base, f"{profile.model_name}:base", test, by_id, profile, batch)
    rec.set("accuracy", accuracy)
    reserve = 1.25 * accuracy["base"]["seconds"] + 5  # one later evaluation, with a load

    # the user-swap items the scale asks for, chosen as notebook 03 chooses them (with
    # sft_user_swap_teacher: by this same untrained model, before any training)
    swap, chosen = choose_user_swap_items(profile, by_id, run_path=run, loaded=base)
    if profile.sft_user_swap_items:
        keys = ("teacher", "candidates", "kept", "accuracy", "used", "seconds")
        rec.set("user_swap_items", {k: chosen.get(k) for k in keys})
    sft_data = sft_pairs(train, profile, by_id, user_swap=swap)
    traces, _ = make_traces(sft_data, by_id, profile.reasoning)
    clock = StepClock(Deadline.after(max(10.0, 0.35 * (deadline.left() - 2 * reserve))))
    sft = train_sft(profile, to_sft_rows(traces), run / "sft", loaded=base, resume=False,
                    callbacks=[clock.callback()], save_strategy="no")  # fmt: skip
    planned = sft_steps(profile, len(traces))
    rec.set("sft", {"traces": len(traces), "steps": sft.steps, "planned": planned,
                    "loss_first": _clean(sft.start_loss), "loss_last": _clean(sft.end_loss),
                    "seconds": round(sft.seconds, 1), **clock.summary()})  # fmt: skip
    del base
    sft_adapter = run / "sft" / ADAPTER
    tuned = load_with_adapter(profile, sft_adapter)
    accuracy["sft"] = score(tuned, f"{profile.model_name}:sft", test, by_id, profile, batch)
    rec.set("accuracy", accuracy)
    personal: dict[str, Any] = {}
    if deadline.left() > 3 * reserve + 10:  # k = 0 and the user-swap items: about 3 evaluations
        personal["sft"] = personalization(tuned, f"{profile.model_name}:sft", test, by_id,
                                          profile, batch)  # fmt: skip
        rec.set("personalization", personal)
    else:
        rec.note("personalization after SFT not measured: the time cap left no room for it")
    del tuned

    if deadline.left() < 4 * reserve + 10:  # its evaluation and the personalization figures
        rec.note("GRPO not run: the time cap left no room for it and its evaluation")
        return
    clock = StepClock(Deadline.after(deadline.left() - 4 * reserve))
    policy = load_policy(profile, sft_adapter)
    rewards = reward_funcs(profile.reasoning)
    try:  # the series' pre-flight: train only on prompts whose group has reward variance
        rows = grpo_rows(grpo_pairs(train, profile, by_id), by_id, prefix=profile.answer_prefix)
        checked = preflight(policy, rows, profile.grpo_num_generations,
                            profile.max_completion_length, rewards,
                            profile.grpo_preflight_prompts, profile.seed)  # fmt: skip
        kept = checked.kept
        rec.set("grpo_preflight", {"checked": checked.checked, "kept": len(kept),
                                   **checked.signal})  # fmt: skip
    except DataError as err:
        if not opts.dry_run:
            rec.note(f"GRPO not run: {err}")
            return
        # the tiny random model of a dry run rarely varies: train anyway, for the mechanics
        rec.note(f"dry run: GRPO trained without reward variance ({err})")
        kept = rows
    grpo = train_grpo(profile, kept, run / "grpo", rewards,
                      loaded=policy, resume=False, callbacks=[clock.callback()],
                      save_strategy="no")  # fmt: skip
    curve = [{k: _clean(h[k]) for k in ("step", "reward", "reward_std", "frac_reward_zero_std")
              if k in h} for h in grpo.history]  # fmt: skip
    rec.set("grpo", {"steps": grpo.steps, "planned": profile.grpo_max_steps,
                     "seconds": round(grpo.seconds, 1), **clock.summary(),
                     "reward_curve": curve})  # fmt: skip
    del policy
    final = load_with_adapter(profile, run / "grpo" / ADAPTER)
    accuracy["grpo"] = score(final, f"{profile.model_name}:grpo", test, by_id, profile, batch)
    rec.set("accuracy", accuracy)
    if deadline.left() > 3 * reserve:
        personal["grpo"] = personalization(final, f"{profile.model_name}:grpo", test, by_id,
                                           profile, batch)  # fmt: skip
        rec.set("personalization", personal)
    else:
        rec.note("personalization after GRPO not measured: the time cap left no room for it")
