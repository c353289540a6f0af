"""The knob exercises: each check recomputes the effect from the run folder, passes on the
solution's answer and fails on a wrong one. Experiments are written here as a short run leaves
them (experiment.json + train_log.json); one slow test runs real ones on the smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persrm_utils.classroom import knobs as ex
from persrm_utils.classroom.checks import ExerciseError
from persrm_utils.records import Pair, write_jsonl
from persrm_utils.run.folders import RunFolder


def _write(run: Path, label: str, kind: str, changed: dict, log: dict, seconds=6.0, steps=3):
    folder = run / ex.EXPERIMENTS / label
    folder.mkdir(parents=True)
    info = {"kind": kind, "label": label, "changed": changed, "steps": steps, "seconds": seconds}
    (folder / ex.INFO).write_text(json.dumps(info))
    (folder / ex.LOG).write_text(json.dumps(log))


def _grpo_log(zero: list[float], length: list[float], kl: list[float] | None = None) -> dict:
    history = []
    for i, (z, n) in enumerate(zip(zero, length, strict=True)):
        row = {"step": i + 1, "reward": -1.0, "frac_reward_zero_std": z}
        row["completions/mean_length"] = n
        if kl is not None:
            row["kl"] = kl[i]
        history.append(row)
    return {"history": history}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    _write(
        path, "sft-lr-high", "sft", {"sft_learning_rate": 1e-3}, {"losses": [[1, 6.0], [2, 5.0]]}
    )
    _write(path, "sft-lr-low", "sft", {"sft_learning_rate": 1e-4}, {"losses": [[1, 6.0], [2, 5.9]]})
    _write(path, "beta", "grpo", {"grpo_beta": 0.1}, _grpo_log([1, 1, 1], [9, 9, 9], [0, 0.2, 0.1]))
    _write(
        path, "g2", "grpo", {"grpo_num_generations": 2}, _grpo_log([1.0, 0.0, 1.0], [10, 20, 30])
    )
    g4 = _grpo_log([0.0, 0.0, 1.0], [12, 12, 12])
    _write(path, "g4", "grpo", {"grpo_num_generations": 4}, g4, seconds=12.0)
    _write(
        path, "len32", "grpo", {"max_completion_length": 32}, _grpo_log([1, 1], [32, 32]), 2.0, 2
    )
    _write(path, "len128", "grpo", {"max_completion_length": 128}, _grpo_log([1, 1], [90, 128]))
    return path


def test_learning_rate_check(run):
    assert not ex.check_03_knob(None, run)
    assert ex.check_03_knob({"sft-lr-high": 1.0, "sft-lr-low": 0.1}, run)
    with pytest.raises(ExerciseError, match="sft-lr-low"):
        ex.check_03_knob({"sft-lr-high": 1.0, "sft-lr-low": 0.2}, run)
    with pytest.raises(ExerciseError, match="lacks the key"):
        ex.check_03_knob({"sft-lr-high": 1.0}, run)


def test_beta_check(run):
    assert not ex.check_04_knob_beta(None, run)
    assert ex.check_04_knob_beta({"kl": [0, 0.2, 0.1], "largest_at_step": 2}, run)
    with pytest.raises(ExerciseError, match="not where kl is largest"):
        ex.check_04_knob_beta({"kl": [0, 0.2, 0.1], "largest_at_step": 3}, run)
    with pytest.raises(ExerciseError, match="kl at step 2"):
        ex.check_04_knob_beta({"kl": [0, 0.3, 0.1], "largest_at_step": 2}, run)


def _solve_knob(run, knob):
    return {value: ex.grpo_effect(e) for value, e in ex.knob_experiments(run, knob).items()}


def test_group_size_check(run):
    assert not ex.check_04_knob(None, run, "grpo_num_generations")
    answer = _solve_knob(run, "grpo_num_generations")
    assert answer[4]["seconds_per_step"] == 4.0 and answer[2]["frac_reward_zero_std"] == 2 / 3
    assert ex.check_04_knob(answer, run, "grpo_num_generations")
    answer[2]["frac_reward_zero_std"] = 1.0  # the last step's value, not the mean
    with pytest.raises(ExerciseError, match="frac_reward_zero_std for grpo_num_generations=2"):
        ex.check_04_knob(answer, run, "grpo_num_generations")


def test_length_check(run):
    answer = _solve_knob(run, "max_completion_length")
    assert answer[32]["completions/mean_length"] == 32 and answer[128]["seconds_per_step"] == 2.0
    assert ex.check_04_knob(answer, run, "max_completion_length")
    answer[128]["seconds_per_step"] = 6.0  # seconds, not seconds per step
    with pytest.raises(ExerciseError, match="seconds_per_step"):
        ex.check_04_knob(answer, run, "max_completion_length")


def test_checks_need_their_experiments(tmp_path):
    with pytest.raises(ExerciseError, match="no sft experiment"):
        ex.check_03_knob({}, tmp_path)
    _write(tmp_path, "g2", "grpo", {"grpo_num_generations": 2}, _grpo_log([1.0], [1.0]))
    with pytest.raises(ExerciseError, match="two GRPO experiments"):
        ex.check_04_knob({}, tmp_path, "grpo_num_generations")


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
