"""Knob experiments: change one setting, rerun a short stage, and measure what changed.

The exercises of notebooks 03 and 04 that turn a knob (learning rate, negative types, reasoning,
``beta``, group size G, completion budget) each run two *short* trainings from the run folder's
own inputs into ``runs/<name>/experiments/<label>/``: ``experiment.json`` (what was changed, how
long it took) and the trainer's ``train_log.json``. Nothing of the main run is touched.
:func:`check_knob` reads those folders again and asks for the effect on one value logged at
every step, its direction, and whether it stands out from the step-to-step noise: copying a
logged number is not enough, and naming the wrong direction fails.

Each step costs about what a step of notebook 03 or 04 costs, and ``experiment.json`` records
the time. On ``smoke`` the experiments show the *mechanics* only (the tiny random model learns
nothing); on other profiles the notebooks run them only when asked.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persrm_utils.classroom.checks import (
    Checked,
    ExerciseError,
    _mapping,
    _not_answered,
    _number,
    _ok,
    _run,
    _wrong,
)
from persrm_utils.classroom.exercises_02 import _pairs
from persrm_utils.errors import ConfigError, MissingInputsError
from persrm_utils.evaluate.held_out import unseen_predictions
from persrm_utils.profiles import get_profile
from persrm_utils.records import Exemplar, Pair, read_jsonl
from persrm_utils.run.folders import RunFolder
from persrm_utils.train.commands import make_traces, sft_pairs
from persrm_utils.train.grpo import grpo_rows, train_grpo
from persrm_utils.train.rewards import reward_funcs
from persrm_utils.train.sft import train_sft
from persrm_utils.train.traces import to_sft_rows

EXPERIMENTS = "experiments"
INFO = "experiment.json"
LOG = "train_log.json"


def _run_path(run: Any) -> Path:
    return Path(getattr(run, "path", run))


def _profile(run_path: Path, **overrides: Any) -> Any:

    manifest = RunFolder.open(run_path).manifest
    return get_profile(manifest.profile, **{**manifest.overrides, **overrides})


def _folder(run_path: Path, label: str) -> Path:
    out = run_path / EXPERIMENTS / label
    if out.exists():
        shutil.rmtree(out)  # an experiment is rerun from scratch, never resumed
    out.mkdir(parents=True)
    return out


def _write_info(out: Path, kind: str, label: str, changed: dict, steps: int, seconds: float):
    info = {"kind": kind, "label": label, "changed": changed, "steps": steps, "seconds": seconds}
    (out / INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")


def _sft_rows(run_path: Path, profile: Any) -> list[dict]:
    """The experiment's training rows, rebuilt from the run's pairs with the changed profile.

    Rebuilding (rather than reusing ``sft/traces.jsonl``) lets an experiment change what the
    rows are made of (``reasoning``, ``sft_negative_types``); both arms of a comparison use the
    package's template traces, so an LLM teacher's traces never mix into one arm only.
    """
    pairs = read_jsonl(run_path / "pairs" / "train.jsonl", Pair)
    by_id = {e.text_id: e for e in read_jsonl(run_path / "exemplars.jsonl", Exemplar)}
    traces, _ = make_traces(sft_pairs(pairs, profile, by_id), by_id, profile.reasoning)
    return to_sft_rows(traces)


def sft_experiment(run: Any, label: str, steps: int = 4, **changed: Any) -> dict[str, Any]:
    """SFT for ``steps`` steps on the run's own training pairs, profile fields ``changed``.

    Starts from the base model with a fresh adapter, like notebook 03, with the same seed, so
    two experiments see their batches in the same order. Returns the experiment.
    """

    run_path = _run_path(run)
    profile = _profile(run_path, **changed, sft_max_steps=steps, sft_epochs=None)
    rows = _sft_rows(run_path, profile)
    out = _folder(run_path, label)
    start = time.perf_counter()
    train_sft(profile, rows, out, resume=False, save_steps=steps)
    seconds = round(time.perf_counter() - start, 1)
    _write_info(out, "sft", label, _jsonable(changed), steps, seconds)
    shutil.rmtree(out / "adapter", ignore_errors=True)  # only the curves are needed
    for checkpoint in out.glob("checkpoint-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)
    return read_experiment(run_path, label)


def _jsonable(changed: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in changed.items()}


def grpo_experiment(
    run: Any, label: str, steps: int = 3, prompts: int = 4, **changed: Any
) -> dict[str, Any]:
    """GRPO for ``steps`` steps from the run's SFT adapter on its first training pairs.

    ``changed`` are profile fields (``grpo_beta``, ``grpo_num_generations``,
    ``grpo_learning_rate``, ``max_completion_length``). The batch is set to one group per step
    (``grpo_batch_size = G``), so runs with different G see the same prompts in the same order.
    """

    run_path = _run_path(run)
    base = _profile(run_path)
    group = int(changed.get("grpo_num_generations", base.grpo_num_generations))
    profile = _profile(
        run_path, **changed, grpo_max_steps=steps, grpo_batch_size=group, grpo_grad_accum=1
    )
    pairs = read_jsonl(run_path / "pairs" / "train.jsonl", Pair)[:prompts]
    by_id = {e.text_id: e for e in read_jsonl(run_path / "exemplars.jsonl", Exemplar)}
    out = _folder(run_path, label)
    start = time.perf_counter()
    train_grpo(
        profile,
        grpo_rows(pairs, by_id, prefix=profile.answer_prefix),
        out,
        reward_funcs(profile.reasoning),
        sft_adapter=run_path / "sft" / "adapter",
        resume=False,
        save_steps=steps,
    )
    seconds = round(time.perf_counter() - start, 1)
    _write_info(out, "grpo", label, _jsonable(changed), steps, seconds)
    shutil.rmtree(out / "adapter", ignore_errors=True)
    for checkpoint in out.glob("checkpoint-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)
    return read_experiment(run_path, label)


def read_experiment(run: Any, label: str) -> dict[str, Any]:
    """``experiment.json`` plus the trainer's log (``losses`` and ``history``)."""
    folder = _run_path(run) / EXPERIMENTS / label
    if not (folder / INFO).is_file():
        raise MissingInputsError(
            f"no experiment '{label}' in {folder.parent}",
            f"run the experiment cell that uses label '{label}' first (same PROFILE and RUN_NAME)",
        )
    info = json.loads((folder / INFO).read_text(encoding="utf-8"))
    info["log"] = json.loads((folder / LOG).read_text(encoding="utf-8"))
    return info


def experiments(run: Any, kind: str | None = None) -> dict[str, dict[str, Any]]:
    """Every finished experiment of a run, by label."""
    root = _run_path(run) / EXPERIMENTS
    labels = sorted(p.parent.name for p in root.glob(f"*/{INFO}")) if root.is_dir() else []
    found = {label: read_experiment(run, label) for label in labels}
    return {k: v for k, v in found.items() if kind is None or v["kind"] == kind}


#: A derived per-step value: tokens trained in the step (TRL logs a running total).
TOKENS_PER_STEP = "tokens_per_step"


def curve(experiment: Mapping[str, Any], key: str) -> list[float]:
    """One logged value per step: ``loss`` or ``tokens_per_step`` for SFT, any TRL key for GRPO
    (``kl``, ``reward``, ``frac_reward_zero_std``, ``completions/clipped_ratio``, ...)."""
    log = experiment["log"]
    if experiment["kind"] == "sft" and key == "loss":
        return [float(v) for _, v in log["losses"]]
    history = [h for h in log.get("history", []) if "train_runtime" not in h]
    if key == TOKENS_PER_STEP:
        totals = [float(h["num_tokens"]) for h in history if "num_tokens" in h]
        return [b - a for a, b in zip([0.0, *totals], totals, strict=False)]
    values = [float(h[key]) for h in history if key in h]
    if not values:
        raise ConfigError(
            f"the {experiment['kind']} experiment '{experiment['label']}' logged no {key!r}",
            f"ask for one of: {', '.join(sorted({k for h in history for k in h}))}",
        )
    return values


# ----------------------------------------------------------------------------------------------
# The checks: the direction of an effect, and whether it stands out from the noise
# ----------------------------------------------------------------------------------------------


def _close(given: float, expected: float, what: str, hint: str, tol: float = 1e-3) -> None:
    if abs(given - expected) > tol * max(1.0, abs(expected)):
        _wrong(f"{what}: you gave {given:.4g}, the run's log gives {expected:.4g}.", hint)


def _need(run: Any, kind: str, what: str) -> dict[str, dict[str, Any]]:
    found = experiments(run, kind)
    if not found:
        raise ExerciseError(
            f"This run has no {kind} experiment yet ({what}). Hint: run the experiment cell "
            "above first; it writes runs/<name>/experiments/<label>/."
        )
    return found


@dataclass(frozen=True)
class KnobMeasure:
    """What a knob's exercise compares between two experiments, one value per logged step."""

    kind: str  # "sft" or "grpo"
    key: str  # a key of :func:`curve`
    last_half: bool  # compare only the second half of the steps (a loss, after its first fall)
    meaning: str


_LATE_LOSS = KnobMeasure("sft", "loss", True, "training loss, last half of the steps")

#: The measure each knob exercise compares. Every one is logged at every step, so its
#: step-to-step spread gives the noise the difference is judged against.
KNOB_MEASURES: dict[str, KnobMeasure] = {
    "sft_learning_rate": _LATE_LOSS,
    "sft_negative_types": _LATE_LOSS,
    "reasoning": KnobMeasure("sft", TOKENS_PER_STEP, False, "tokens trained per step"),
    "grpo_beta": KnobMeasure("grpo", "kl", False, "KL to the reference model per step"),
    "grpo_num_generations": KnobMeasure(
        "grpo", "frac_reward_zero_std", False, "share of groups whose rewards are all equal"
    ),
    "max_completion_length": KnobMeasure(
        "grpo", "completions/clipped_ratio", False, "share of completions cut at the limit"
    ),
}
DIRECTIONS = ("higher", "lower", "unclear")


@dataclass(frozen=True)
class Effect:
    """The changed experiment's mean minus the baseline's, and the noise around that difference.

    ``noise`` is two standard errors of the difference of two means (Welch: each arm's
    step-to-step variance over its number of steps): a difference inside it could come from
    which batches the steps happened to see. Treating steps as independent draws understates
    the noise of a trending curve, which is why a loss is compared over its last half only.
    """

    baseline: float
    changed: float
    noise: float
    n_baseline: int
    n_changed: int

    @property
    def difference(self) -> float:
        return self.changed - self.baseline

    @property
    def direction(self) -> str:
        if self.difference > self.noise:
            return "higher"
        if self.difference < -self.noise:
            return "lower"
        return "unclear"


def measure_effect(baseline: list[float], changed: list[float]) -> Effect:
    """:class:`Effect` of two lists of per-step values (noise infinite with fewer than 2 each)."""
    if len(baseline) < 2 or len(changed) < 2:
        noise = math.inf
    else:
        noise = 2 * math.sqrt(
            statistics.variance(baseline) / len(baseline)
            + statistics.variance(changed) / len(changed)
        )
    return Effect(
        statistics.fmean(baseline), statistics.fmean(changed), noise, len(baseline), len(changed)
    )


def knob_values(experiment: Mapping[str, Any], knob: str) -> list[float]:
    """The per-step values the exercise on ``knob`` compares, for one experiment."""
    measure = KNOB_MEASURES[knob]
    values = curve(experiment, measure.key)
    return values[len(values) // 2 :] if measure.last_half else values


def knob_effect(run: Any, knob: str, baseline: str, changed: str) -> Effect:
    """The effect of turning ``knob``: experiment ``changed`` against experiment ``baseline``."""
    if knob not in KNOB_MEASURES:
        raise ConfigError(f"unknown knob {knob!r}", f"use one of {', '.join(KNOB_MEASURES)}")
    a, b = read_experiment(run, baseline), read_experiment(run, changed)
    return measure_effect(knob_values(a, knob), knob_values(b, knob))


def check_knob(answer: Mapping[str, Any] | None, run: Any, knob: str) -> Checked:
    """Verifies the effect of turning one knob: its size, its direction, and whether it stands
    out from the step-to-step noise.

    ``answer = {"baseline": label, "changed": label, "effect": changed mean - baseline mean,
    "direction": "higher" | "lower" | "unclear"}`` for two experiments of the run that set
    ``knob`` to different values; the measure is ``KNOB_MEASURES[knob]``. "unclear" is the
    right direction when the difference is inside two standard errors.
    """
    measure = KNOB_MEASURES.get(knob)
    if measure is None:
        raise ConfigError(f"unknown knob {knob!r}", f"use one of {', '.join(KNOB_MEASURES)}")
    if answer is None:
        return _not_answered(
            f"run two {measure.kind} experiments that set {knob} differently, then answer = "
            "{'baseline': label, 'changed': label, 'effect': mean of the changed run minus "
            "mean of the baseline, 'direction': 'higher' | 'lower' | 'unclear'} for the "
            f"{measure.meaning} (knob_values(experiment, {knob!r}))."
        )
    found = {k: v for k, v in _need(run, measure.kind, knob).items() if knob in v["changed"]}
    answer = _mapping(
        answer,
        ["baseline", "changed", "effect", "direction"],
        "{'baseline': 'a', 'changed': 'b', 'effect': -0.1, 'direction': 'lower'}",
    )
    for role in ("baseline", "changed"):
        if answer[role] not in found:
            _wrong(
                f"{answer[role]!r} is not a {measure.kind} experiment of this run that set "
                f"{knob} (found: {', '.join(sorted(found)) or 'none'}).",
                f"run {measure.kind}_experiment(session.path, label, {knob}=...) for both arms.",
            )
    a, b = found[answer["baseline"]], found[answer["changed"]]
    if a["changed"][knob] == b["changed"][knob]:
        _wrong(
            f"both experiments set {knob} = {a['changed'][knob]!r}: there is no knob turned.",
            "compare two experiments with different values.",
        )
    effect = measure_effect(knob_values(a, knob), knob_values(b, knob))
    if measure.key == "kl" and not any(v for e in (a, b) for v in knob_values(e, knob)):
        _wrong("the KL stayed at zero in both experiments.", "raise grpo_learning_rate.")
    _close(
        _number(answer["effect"], "effect"),
        effect.difference,
        f"effect (mean of {answer['changed']} minus mean of {answer['baseline']})",
        f"average knob_values(experiment, {knob!r}) of each run, then subtract.",
    )
    said = answer["direction"]
    if said not in DIRECTIONS:
        _wrong(f"direction {said!r} is not one of {DIRECTIONS}.", "pick one of the three.")
    summary = (
        f"{knob}: {measure.meaning} {effect.baseline:.4g} ({answer['baseline']}, "
        f"{a['changed'][knob]!r}) -> {effect.changed:.4g} ({answer['changed']}, "
        f"{b['changed'][knob]!r}), difference {effect.difference:+.4g}, noise "
        f"±{effect.noise:.3g} (2 standard errors over {effect.n_baseline} and "
        f"{effect.n_changed} steps)"
    )
    if said != effect.direction:
        why = (
            "the difference is inside the noise: it could come from which batches the steps saw"
            if effect.direction == "unclear"
            else f"the difference stands out from the noise, and it is {effect.direction}"
        )
        _wrong(
            f"you said {said!r}; {summary}: {why}.",
            "compare |effect| with 2 standard errors of the difference (Effect.noise).",
        )
    return _ok(f"{summary}: {effect.direction}.")


# ----------------------------------------------------------------------------------------------
# Notebook 05: knobs already turned in the run (k, negative type), read from its predictions
# ----------------------------------------------------------------------------------------------

#: The model whose accuracy by negative type the 05 exercise asks for.
TYPE_MODEL_05 = "stylometric (char n-grams)"


def _debiased(df: Any, by: str) -> dict[Any, float]:
    """Position-debiased accuracy per value of ``by``: per pair the mean of its two orders."""
    per_pair = df.groupby([by, "pair_id"])["correct"].mean()
    return {k: float(v) for k, v in per_pair.groupby(level=0).mean().items()}


def _unseen(run: Any) -> Any:

    folder = _run(run)
    df = unseen_predictions(folder.path)
    pairs = {p.pair_id: p for p in _pairs(folder, ("test",))}
    df["negative_type"] = df["pair_id"].map(lambda i: pairs[i].negative_type)
    df["k"] = df["pair_id"].map(lambda i: len(pairs[i].exemplar_ids))
    df.loc[df["model"].str.endswith("k=0"), "k"] = 0
    return df


def k_effect(run: Any) -> dict[int, float]:
    """The final judge's accuracy by k on unseen authors (k = 0: the no-exemplar ablation)."""
    df = _unseen(run)
    final = df[df["model"].str.startswith("SFT + GRPO")]
    return _debiased(final, "k")


def type_effect(run: Any, model: str = TYPE_MODEL_05) -> dict[str, float]:
    df = _unseen(run)
    return _debiased(df[df["model"] == model], "negative_type")


def _check_table(answer: Any, expected: dict, what: str, example: str, hint: str) -> None:
    answer = _mapping(answer, list(expected), example)
    for key, value in expected.items():
        _close(_number(answer[key], f"{what} {key}"), value, f"{what} {key}", hint, tol=1e-6)


def check_05_knob_k(answer: Mapping[int, float] | None, run: Any) -> Checked:
    """Accuracy of the final judge by k (0 = the ablation without exemplars), unseen authors."""
    if answer is None:
        return _not_answered(
            "answer = {k: accuracy} for the SFT + GRPO judge on unseen pairs, k from each "
            "pair's exemplar_ids, and k = 0 from the model 'SFT + GRPO, k=0'."
        )
    expected = k_effect(run)
    _check_table(
        answer,
        expected,
        "accuracy at k =",
        "{0: 0.5, 1: 0.5, 2: 0.75}",
        "per pair, average the two orders first; then average the pairs that have this k.",
    )
    shown = ", ".join(f"k={k}: {v:.3f}" for k, v in sorted(expected.items()))
    return _ok(f"SFT + GRPO by number of exemplars: {shown}.")


def check_05_knob_type(answer: Mapping[str, float] | None, run: Any) -> Checked:
    """Accuracy of the character n-gram baseline by negative type, unseen authors."""
    if answer is None:
        return _not_answered(
            f"answer = {{negative_type: accuracy}} for {TYPE_MODEL_05!r} on unseen pairs."
        )
    expected = type_effect(run)
    _check_table(
        answer,
        expected,
        "accuracy on",
        "{'cross_author': 0.5, 'minor_replace': 0.5, ...}",
        "per pair, average the two orders first; then average the pairs of this type.",
    )
    shown = ", ".join(f"{k}: {v:.3f}" for k, v in sorted(expected.items()))
    return _ok(f"{TYPE_MODEL_05} by negative type: {shown}.")
