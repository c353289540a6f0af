"""The knob exercises: each check recomputes the effect from the run folder, passes on the
solution's answer and fails on a wrong one, above all on the wrong direction. Experiments are
written here as a short run leaves them (experiment.json + train_log.json); the smoke series'
solutions run real ones (tests/test_notebooks.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from persrm_utils.classroom import knobs as ex
from persrm_utils.classroom.checks import ExerciseError
from persrm_utils.records import Pair, write_jsonl
from persrm_utils.run.folders import RunFolder


def _write(run: Path, label: str, kind: str, changed: dict, log: dict, seconds=6.0, steps=6):
    folder = run / ex.EXPERIMENTS / label
    folder.mkdir(parents=True)
    info = {"kind": kind, "label": label, "changed": changed, "steps": steps, "seconds": seconds}
    (folder / ex.INFO).write_text(json.dumps(info))
    (folder / ex.LOG).write_text(json.dumps(log))


def _sft_log(losses: list[float], tokens: list[float] | None = None) -> dict:
    history = [{"step": i + 1, "loss": v} for i, v in enumerate(losses)]
    if tokens is not None:
        total = 0.0
        for row, n in zip(history, tokens, strict=True):
            total += n
            row["num_tokens"] = total
    return {"losses": [[i + 1, v] for i, v in enumerate(losses)], "history": history}


def _grpo_log(**series: list[float]) -> dict:
    n = len(next(iter(series.values())))
    return {"history": [{"step": i + 1, **{k: v[i] for k, v in series.items()}} for i in range(n)]}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    # last halves: [2.0, 2.1, 1.9] against [4.0, 4.2, 3.8]: clearly higher at the low rate
    _write(
        path, "lr-1x", "sft", {"sft_learning_rate": 1e-3}, _sft_log([6.0, 4.0, 3.0, 2.0, 2.1, 1.9])
    )
    _write(
        path,
        "lr-0.1x",
        "sft",
        {"sft_learning_rate": 1e-4},
        _sft_log([6.0, 5.0, 4.5, 4.0, 4.2, 3.8]),
    )
    # last halves: [2.0, 3.0, 1.0] against [2.2, 1.2, 3.2]: a difference of 0.2, noise 1.6
    _write(
        path,
        "types-all",
        "sft",
        {"sft_negative_types": None},
        _sft_log([6.0, 4.0, 3.0, 2.0, 3.0, 1.0]),
    )
    _write(
        path,
        "types-style_random",
        "sft",
        {"sft_negative_types": ["style_random"]},
        _sft_log([6.0, 4.0, 3.0, 2.2, 1.2, 3.2]),
    )
    _write(
        path,
        "reasoning-none",
        "sft",
        {"reasoning": "none"},
        _sft_log([1.0] * 4, tokens=[100, 110, 90, 100]),
    )
    _write(
        path,
        "reasoning-full",
        "sft",
        {"reasoning": "full"},
        _sft_log([1.0] * 4, tokens=[400, 420, 380, 400]),
    )
    _write(
        path,
        "G2",
        "grpo",
        {"grpo_num_generations": 2},
        _grpo_log(frac_reward_zero_std=[1.0, 1.0, 1.0]),
    )
    _write(
        path,
        "G4",
        "grpo",
        {"grpo_num_generations": 4},
        _grpo_log(frac_reward_zero_std=[0.0, 0.0, 0.0]),
    )
    _write(path, "beta-0.04", "grpo", {"grpo_beta": 0.04}, _grpo_log(kl=[0.0, 0.0, 0.0]))
    _write(path, "beta-0.4", "grpo", {"grpo_beta": 0.4}, _grpo_log(kl=[0.0, 0.0, 0.0]))
    _write(path, "beta-same", "grpo", {"grpo_beta": 0.04}, _grpo_log(kl=[0.1, 0.2, 0.3]))
    return path  # fmt: skip


def _answer(baseline: str, changed: str, effect: float, direction: str) -> dict:
    return {"baseline": baseline, "changed": changed, "effect": effect, "direction": direction}


def test_the_effect_is_a_difference_of_means_judged_against_two_standard_errors():
    effect = ex.measure_effect([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert effect.difference == 3.0
    assert effect.noise == pytest.approx(2 * math.sqrt(1 / 3 + 1 / 3))
    assert effect.direction == "higher"
    assert ex.measure_effect([4.0, 5.0, 6.0], [1.0, 2.0, 3.0]).direction == "lower"
    assert ex.measure_effect([1.0, 3.0], [2.0, 4.0]).direction == "unclear"  # 1 vs noise 2.8
    assert ex.measure_effect([1.0], [5.0]).noise == math.inf  # one step: no noise estimate
    assert ex.measure_effect([1.0, 1.0], [1.0, 1.0]).direction == "unclear"


def test_a_clear_effect_must_be_named_in_its_direction(run):
    assert not ex.check_knob(None, run, "sft_learning_rate")
    effect = ex.knob_effect(run, "sft_learning_rate", "lr-1x", "lr-0.1x")
    assert effect.difference == pytest.approx(2.0) and effect.direction == "higher"
    assert ex.check_knob(_answer("lr-1x", "lr-0.1x", 2.0, "higher"), run, "sft_learning_rate")
    with pytest.raises(
        ExerciseError, match=r"you said 'lower'.*stands out from the noise, and it is higher"
    ):
        ex.check_knob(_answer("lr-1x", "lr-0.1x", 2.0, "lower"), run, "sft_learning_rate")
    with pytest.raises(ExerciseError, match="you said 'unclear'"):
        ex.check_knob(_answer("lr-1x", "lr-0.1x", 2.0, "unclear"), run, "sft_learning_rate")
    with pytest.raises(ExerciseError, match="effect"):  # the first loss minus the last: a copy
        ex.check_knob(_answer("lr-1x", "lr-0.1x", 4.1, "higher"), run, "sft_learning_rate")
    swapped = _answer("lr-0.1x", "lr-1x", -2.0, "lower")  # the other way round is also right
    assert ex.check_knob(swapped, run, "sft_learning_rate")


def test_a_difference_inside_the_noise_is_unclear(run):
    effect = ex.knob_effect(run, "sft_negative_types", "types-all", "types-style_random")
    assert effect.difference == pytest.approx(0.2) and effect.direction == "unclear"
    answer = _answer("types-all", "types-style_random", effect.difference, "higher")
    with pytest.raises(ExerciseError, match="inside the noise"):
        ex.check_knob(answer, run, "sft_negative_types")
    answer["direction"] = "unclear"
    assert ex.check_knob(answer, run, "sft_negative_types")


def test_reasoning_is_compared_on_tokens_per_step_from_the_running_total(run):
    full = ex.read_experiment(run, "reasoning-full")
    assert ex.knob_values(full, "reasoning") == [400, 420, 380, 400]
    answer = _answer("reasoning-none", "reasoning-full", 300.0, "higher")
    assert ex.check_knob(answer, run, "reasoning")


def test_grpo_knobs_and_what_the_check_refuses(run):
    assert ex.check_knob(_answer("G2", "G4", -1.0, "lower"), run, "grpo_num_generations")
    with pytest.raises(ExerciseError, match="stayed at zero"):  # the beta runs measured nothing
        ex.check_knob(_answer("beta-0.04", "beta-0.4", 0.0, "unclear"), run, "grpo_beta")
    with pytest.raises(ExerciseError, match="no knob turned"):
        ex.check_knob(_answer("beta-0.04", "beta-same", 0.2, "unclear"), run, "grpo_beta")
    with pytest.raises(ExerciseError, match="'G8' is not a grpo experiment"):
        ex.check_knob(_answer("G2", "G8", -1.0, "lower"), run, "grpo_num_generations")
    with pytest.raises(ExerciseError, match="direction 'down'"):
        ex.check_knob(_answer("G2", "G4", -1.0, "down"), run, "grpo_num_generations")


def test_checks_need_their_experiments(tmp_path):
    with pytest.raises(ExerciseError, match="no sft experiment"):
        ex.check_knob(_answer("a", "b", 0.0, "unclear"), tmp_path, "sft_learning_rate")


def _pair(i: int, k: int, neg: str) -> Pair:
    return Pair(
        pair_id=f"p{i}", split="test", author_id="a", text_id=f"t{i}", prompt="Open.",
        chosen="Real text.", rejected="Other text.", negative_type=neg,
        exemplar_ids=[f"e{j}" for j in range(k)], chosen_position="A",
        negative_source="offline:x", seen_author=False,
    )  # fmt: skip


@pytest.fixture
def eval_run(runs_root: Path) -> Path:
    run = RunFolder.create("t05", "smoke", root=runs_root)
    pairs = [_pair(0, 1, "cross_author"), _pair(1, 2, "cross_author"), _pair(2, 2, "style_mimic")]
    write_jsonl(run.file("pairs/test.jsonl"), pairs)
    rows = []
    correct = {  # (model, pair): (order 1, order 2)
        ("SFT + GRPO", 0): (1, 0), ("SFT + GRPO", 1): (1, 1), ("SFT + GRPO", 2): (0, 0),
        ("SFT + GRPO, k=0", 0): (0, 0), ("SFT + GRPO, k=0", 1): (1, 0),
        ("SFT + GRPO, k=0", 2): (0, 0),
        (ex.TYPE_MODEL_05, 0): (1, 1), (ex.TYPE_MODEL_05, 1): (0, 1),
        (ex.TYPE_MODEL_05, 2): (0, 0),
    }  # fmt: skip
    for (model, i), both in correct.items():
        for swap, c in zip((False, True), both, strict=True):
            rows.append({"model": model, "pair_id": f"p{i}", "swap": swap, "letter": "A",
                         "correct": bool(c)})  # fmt: skip
    file = run.file("eval/predictions.jsonl")
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run.path


def test_k_check(eval_run):
    assert ex.k_effect(eval_run) == {0: 0.5 / 3, 1: 0.5, 2: 0.5}
    assert not ex.check_05_knob_k(None, eval_run)
    assert ex.check_05_knob_k({0: 0.5 / 3, 1: 0.5, 2: 0.5}, eval_run)
    with pytest.raises(ExerciseError, match="accuracy at k = 2"):
        ex.check_05_knob_k({0: 0.5 / 3, 1: 0.5, 2: 2 / 3}, eval_run)  # mean over rows


def test_type_check(eval_run):
    assert ex.type_effect(eval_run) == {"cross_author": 0.75, "style_mimic": 0.0}
    assert ex.check_05_knob_type({"cross_author": 0.75, "style_mimic": 0.0}, eval_run)
    with pytest.raises(ExerciseError, match="accuracy on cross_author"):
        ex.check_05_knob_type({"cross_author": 0.5, "style_mimic": 0.0}, eval_run)
