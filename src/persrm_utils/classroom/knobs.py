"""Knob experiments: change one setting, rerun a short stage, and measure what changed.

The exercises of notebooks 03 and 04 that turn a knob (learning rate, ``beta``, group size G)
each run a *short* training from the run folder's own inputs into
``runs/<name>/experiments/<label>/``: ``experiment.json`` (what was changed, how long it took) and
the trainer's ``train_log.json``. Nothing of the main run is touched. The checks
(``check_03_knob``, ``check_04_knob_beta``, ``check_04_knob_group``) read those folders again and
recompute the effect, so they agree with whatever the learner's run produced.

Each step costs about what a step of notebook 03 or 04 costs, and ``experiment.json`` records
the time. On ``smoke`` the experiments show the *mechanics* only (the tiny random model learns
nothing); on other profiles the notebooks run them only when asked.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
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
from persrm_utils.classroom.exercises_05 import _unseen_predictions
from persrm_utils.errors import ConfigError, MissingInputsError
from persrm_utils.profiles import get_profile
from persrm_utils.records import Exemplar, Pair, read_jsonl
from persrm_utils.run.folders import RunFolder
from persrm_utils.train.grpo import grpo_rows, train_grpo
from persrm_utils.train.rewards import reward_funcs
from persrm_utils.train.sft import train_sft
from persrm_utils.train.traces import Trace, to_sft_rows

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


def sft_experiment(run: Any, label: str, steps: int = 4, **changed: Any) -> dict[str, Any]:
    """SFT for ``steps`` steps on the run's own traces (``sft/traces.jsonl``), fields changed.

    Starts from the base model with a fresh adapter, like notebook 03. Returns the experiment.
    """

    run_path = _run_path(run)
    profile = _profile(run_path, **changed, sft_max_steps=steps)
    traces = read_jsonl(run_path / "sft" / "traces.jsonl", Trace)
    out = _folder(run_path, label)
    start = time.perf_counter()
    train_sft(profile, to_sft_rows(traces), out, resume=False, save_steps=steps)
    _write_info(out, "sft", label, changed, steps, round(time.perf_counter() - start, 1))
    shutil.rmtree(out / "adapter", ignore_errors=True)  # only the curves are needed
    for checkpoint in out.glob("checkpoint-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)
    return read_experiment(run_path, label)


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
    profile = _profile(run_path, **changed, grpo_max_steps=steps, grpo_batch_size=group)
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
    _write_info(out, "grpo", label, changed, steps, round(time.perf_counter() - start, 1))
    shutil.rmtree(out / "adapter", ignore_errors=True)
    for checkpoint in out.glob("checkpoint-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)
    return read_experiment(run_path, label)


def read_experiment(run: Any, label: str) -> dict[str, Any]:
    """``experiment.json`` plus the trainer's log (``losses`` for SFT, ``history`` for GRPO)."""
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


def curve(experiment: Mapping[str, Any], key: str) -> list[float]:
    """One logged metric per step: ``loss`` for SFT, any TRL key (``kl``, ``reward``) for GRPO."""
    log = experiment["log"]
    if experiment["kind"] == "sft":
        if key != "loss":
            raise ConfigError(
                f"SFT experiments log only 'loss', not {key!r}", "ask for curve(experiment, 'loss')"
            )
        return [float(v) for _, v in log["losses"]]
    return [float(h[key]) for h in log["history"] if key in h]


# ----------------------------------------------------------------------------------------------
# The checks
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


def loss_drop(experiment: Mapping[str, Any]) -> float:
    """First logged SFT loss minus the last: how far the loss fell in the experiment."""
    losses = curve(experiment, "loss")
    return losses[0] - losses[-1]


def check_03_knob(answer: Mapping[str, float] | None, run: Any) -> Checked:
    """The learning-rate knob: the loss drop of every ``sft`` experiment, by label."""
    if answer is None:
        return _not_answered(
            "answer = {label: first loss - last loss} for each SFT experiment, read from "
            "read_experiment(session.path, label)['log']['losses']."
        )
    found = _need(run, "sft", "the learning-rate experiment")
    answer = _mapping(answer, list(found), "{'sft-lr-...': 0.12, ...}")
    for label, exp in found.items():
        given = _number(answer[label], f"the loss drop of {label}")
        _close(given, loss_drop(exp), f"loss drop of {label}", "first loss minus last loss.")
    rates = {label: e["changed"].get("sft_learning_rate") for label, e in found.items()}
    drops = {label: round(loss_drop(e), 4) for label, e in found.items()}
    return _ok(f"loss drop by learning rate: {', '.join(f'{rates[k]}: {drops[k]}' for k in drops)}")


def check_04_knob_beta(answer: Mapping[str, Any] | None, run: Any) -> Checked:
    """``beta`` > 0: the KL per step of the experiment, and at which step it was largest."""
    if answer is None:
        return _not_answered(
            "answer = {'kl': [the logged kl per step], 'largest_at_step': 1-based step} for "
            "the experiment with grpo_beta > 0."
        )
    found = {
        k: v for k, v in _need(run, "grpo", "beta").items() if v["changed"].get("grpo_beta", 0) > 0
    }
    if not found:
        _wrong("No GRPO experiment of this run has grpo_beta > 0.", "run the beta cell above.")
    answer = _mapping(answer, ["kl", "largest_at_step"], "{'kl': [...], 'largest_at_step': 3}")
    label, exp = sorted(found.items())[0]
    kl = curve(exp, "kl")
    given = list(answer["kl"]) if isinstance(answer["kl"], list | tuple) else None
    if given is None or len(given) != len(kl):
        _wrong(
            f"'kl' should be a list of {len(kl)} numbers (one per logged step of {label}).",
            "read read_experiment(session.path, label)['log']['history'][i]['kl'].",
        )
    for i, (g, e) in enumerate(zip(given, kl, strict=True), 1):
        _close(_number(g, f"kl at step {i}"), e, f"kl at step {i} of {label}", "copy the log.")
    step = int(_number(answer["largest_at_step"], "largest_at_step"))
    best = max(kl)
    if not 1 <= step <= len(kl) or kl[step - 1] != best:
        _wrong(f"Step {step} is not where kl is largest ({best:.3g}).", "steps count from 1.")
    return _ok(f"{label}: kl per step {[round(v, 6) for v in kl]}, largest at step {step}.")


#: The GRPO knobs the 04 exercises turn, and what each answer reports per value.
GRPO_KNOBS = ("grpo_num_generations", "max_completion_length")
GRPO_MEASURES = ("frac_reward_zero_std", "completions/mean_length", "seconds_per_step")


def grpo_effect(experiment: Mapping[str, Any]) -> dict[str, float]:
    """What one GRPO experiment measured: mean zero-std share, mean length, seconds per step."""
    out = {}
    for key in GRPO_MEASURES[:2]:
        values = curve(experiment, key)
        out[key] = sum(values) / len(values) if values else float("nan")
    out["seconds_per_step"] = experiment["seconds"] / experiment["steps"]
    return out


def knob_experiments(run: Any, knob: str) -> dict[Any, dict[str, Any]]:
    """GRPO experiments (without beta) that changed ``knob``, by the value they set."""
    return {
        e["changed"][knob]: e
        for e in experiments(run, "grpo").values()
        if knob in e["changed"] and not e["changed"].get("grpo_beta")
    }


def check_04_knob(answer: Mapping[Any, Any] | None, run: Any, knob: str) -> Checked:
    """A GRPO knob (group size G, or completion length): what each value measured.

    ``answer = {value: {"frac_reward_zero_std": ..., "completions/mean_length": ...,
    "seconds_per_step": ...}}`` for every GRPO experiment (without beta) that set ``knob``;
    the means are over the logged steps.
    """
    if knob not in GRPO_KNOBS:
        raise ConfigError(f"unknown GRPO knob {knob!r}", f"use one of {GRPO_KNOBS}")
    if answer is None:
        return _not_answered(
            f"answer = {{value of {knob}: {{'frac_reward_zero_std': mean over steps, "
            "'completions/mean_length': mean over steps, 'seconds_per_step': seconds / steps}}."
        )
    by_value = knob_experiments(run, knob)
    if len(by_value) < 2:
        _wrong(
            f"This exercise needs two GRPO experiments with different {knob} (found "
            f"{len(by_value)}).",
            "run grpo_experiment(...) once per value, with a label of your choice.",
        )
    answer = _mapping(answer, list(by_value), "{2: {...}, 4: {...}}")
    lines = []
    for value, exp in sorted(by_value.items()):
        cell = _mapping(answer[value], GRPO_MEASURES, "{'frac_reward_zero_std': 0.5, ...}")
        effect = grpo_effect(exp)
        for key in GRPO_MEASURES:
            _close(
                _number(cell[key], f"{key} for {knob}={value}"),
                effect[key],
                f"{key} for {knob}={value}",
                "average the logged values over steps; seconds_per_step is seconds / steps.",
                tol=0.01,
            )
        lines.append(
            f"{knob}={value}: zero-std share {effect['frac_reward_zero_std']:.2f}, "
            f"length {effect['completions/mean_length']:.0f}, "
            f"{effect['seconds_per_step']:.1f} s/step"
        )
    return _ok("; ".join(lines))


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
    df = _unseen_predictions(folder)
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
