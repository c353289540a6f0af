"""What a training stage resumes, what it trains fresh, and what it refuses to call done.

A resume may only continue the same configuration: a changed training setting, or ``--force``,
starts fresh, the adapter of the earlier run stays until the new one is complete, and the manifest
and the adapter's own record say which settings the weights were trained with. A stage whose
weights come out non-finite or absurdly large fails instead of ending "done". All on the tiny
model, for real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from smoke_run import build_smoke_run
from training_helpers import StopAt, grpo_rows_of, judge_rows

from persrm_utils.cli import main
from persrm_utils.errors import TrainingError
from persrm_utils.profiles import get_profile
from persrm_utils.run.folders import RunFolder, sha256_of
from persrm_utils.run.runner import TRAIN_AGAIN_ENV
from persrm_utils.train.grpo import load_policy, train_grpo
from persrm_utils.train.rewards import completion_text
from persrm_utils.train.sft import train_sft
from persrm_utils.train.trainer import ADAPTER, TRAINING_RECORD, last_checkpoint

SFT = "03_sft_qlora"


def _length_reward(completions, **kwargs):
    """Varies on a random model (a 0/1 correctness reward would not: no gradient)."""
    return [len(completion_text(c)) / 100 for c in completions]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A smoke run with stage 03 done through `persrm sft` (2 steps at the default rate)."""
    root = tmp_path_factory.mktemp("fresh")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSRM_RUNS_DIR", str(root / "runs"))
        mp.setenv("PERSRM_CACHE_DIR", str(root / "cache"))
        build_smoke_run("f")
        assert main(["sft", "--run", "f", "--set", "sft_max_steps=2"]) == 0
    return root


@pytest.fixture
def run_copy(trained_run, tmp_path, monkeypatch):
    """This test's own copy of the trained run (the runs folder copied whole, names unchanged)."""
    shutil.copytree(trained_run / "runs", tmp_path / "runs")
    monkeypatch.setenv("PERSRM_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(trained_run / "cache"))
    return tmp_path / "runs" / "f"


def test_force_with_a_changed_learning_rate_trains_again_and_records_it(run_copy, capsys):
    sft = run_copy / "sft"
    first = sha256_of(sft / ADAPTER / "adapter_model.safetensors")
    first_lr = get_profile("smoke").sft_learning_rate
    capsys.readouterr()

    # without --force a finished stage is skipped, and the message says the settings differ
    assert main(["sft", "--run", "f", "--set", "sft_max_steps=2",
                 "--set", "sft_learning_rate=0.05"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"{SFT} is already done" in out
    assert f"sft_learning_rate {first_lr:g} -> 0.05" in out and "--force" in out
    assert sha256_of(sft / ADAPTER / "adapter_model.safetensors") == first

    assert main(["sft", "--run", "f", "--force", "--set", "sft_max_steps=2",
                 "--set", "sft_learning_rate=0.05"]) == 0  # fmt: skip
    summary = json.loads((sft / "summary.json").read_text())
    assert summary["sft"]["resumed_from"] is None, "a changed setting must not resume"
    assert [s for s, _ in summary["sft"]["losses"]] == [1, 2], "both steps trained again"
    assert sha256_of(sft / ADAPTER / "adapter_model.safetensors") != first
    # the manifest and the adapter's own record name the rate the weights were trained with
    record = RunFolder.open(run_copy).manifest.stages[SFT]
    assert record.status == "done" and record.config["sft_learning_rate"] == 0.05
    beside = json.loads((sft / ADAPTER / TRAINING_RECORD).read_text())
    assert beside["settings"]["trainer"]["learning_rate"] == 0.05
    assert record.training["fingerprint"] == beside["fingerprint"]
    assert record.training["resumed_from"] is None
    # the old run's checkpoints were not left for a later resume to pick up
    state = json.loads((Path(last_checkpoint(sft)) / "trainer_state.json").read_text())
    rates = [e["learning_rate"] for e in state["log_history"] if "learning_rate" in e]
    assert max(rates) == pytest.approx(0.05)


def test_force_with_the_same_settings_trains_again(run_copy):
    """`--force` means "train again", not "resume the finished checkpoint and stop at once"."""
    sft = run_copy / "sft"
    assert main(["sft", "--run", "f", "--force", "--set", "sft_max_steps=2"]) == 0
    summary = json.loads((sft / "summary.json").read_text())
    assert summary["sft"]["resumed_from"] is None
    assert [s for s, _ in summary["sft"]["losses"]] == [1, 2]
    assert RunFolder.open(run_copy).manifest.stages[SFT].runs == 2


def test_train_again_in_the_environment_starts_fresh_even_with_the_same_settings(
    tmp_path, monkeypatch, capsys
):
    """The kernels of `persrm run --force` carry TRAIN_AGAIN_ENV: a finished run with the same
    settings would otherwise be resumed from its last checkpoint and train nothing."""
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    profile, out = get_profile("smoke", sft_max_steps=2), tmp_path / "sft"
    train_sft(profile, judge_rows(), out)
    assert train_sft(profile, judge_rows(), out).resumed_from is not None  # without it: resumed
    capsys.readouterr()
    monkeypatch.setenv(TRAIN_AGAIN_ENV, "1")
    result = train_sft(profile, judge_rows(), out)
    assert result.resumed_from is None and [s for s, _ in result.losses] == [1, 2]
    assert "`persrm run --force` asked to train again" in capsys.readouterr().out


def test_a_changed_setting_does_not_resume_an_interrupted_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "sft"
    with pytest.raises(KeyboardInterrupt):
        train_sft(get_profile("smoke", sft_max_steps=6), judge_rows(), out, callbacks=[StopAt(3)])
    assert Path(last_checkpoint(out)).name == "checkpoint-2"
    capsys.readouterr()

    changed = get_profile("smoke", sft_max_steps=6, sft_learning_rate=5e-3)
    result = train_sft(changed, judge_rows(), out)  # resume=True, the default
    assert result.resumed_from is None
    assert [s for s, _ in result.losses] == [1, 2, 3, 4, 5, 6]
    said = capsys.readouterr().out
    assert "starting fresh" in said and "learning_rate 0.001 -> 0.005" in said
    log = json.loads((out / "train_log.json").read_text())
    assert log["resumed_from"] is None and [s for s, _ in log["losses"]] == [1, 2, 3, 4, 5, 6]


def test_other_training_rows_do_not_resume_an_interrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    profile = get_profile("smoke", sft_max_steps=6)
    out = tmp_path / "sft"
    with pytest.raises(KeyboardInterrupt):
        train_sft(profile, judge_rows(), out, callbacks=[StopAt(3)])
    result = train_sft(profile, judge_rows(7), out)
    assert result.resumed_from is None and result.steps == 6


def test_a_killed_fresh_run_keeps_the_finished_adapter(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "sft"
    train_sft(get_profile("smoke", sft_max_steps=2), judge_rows(), out)
    before = sha256_of(out / ADAPTER)
    trained_with = json.loads((out / ADAPTER / TRAINING_RECORD).read_text())
    assert trained_with["settings"]["trainer"]["learning_rate"] == 1e-3  # the smoke profile's

    changed = get_profile("smoke", sft_max_steps=2, sft_learning_rate=5e-3)
    with pytest.raises(KeyboardInterrupt):
        train_sft(changed, judge_rows(), out, callbacks=[StopAt(1)])
    assert sha256_of(out / ADAPTER) == before, "the finished adapter stays until a new one is"
    # the same new settings again: trains to the end and only then replaces the old adapter
    result = train_sft(changed, judge_rows(), out)
    assert result.steps == 2 and sha256_of(out / ADAPTER) != before
    now = json.loads((out / ADAPTER / TRAINING_RECORD).read_text())
    assert now["settings"]["trainer"]["learning_rate"] == 5e-3
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_grpo_with_a_changed_setting_starts_fresh(tmp_path, monkeypatch, smoke_grpo_rows):
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "grpo"

    def run(lr: float):
        profile = get_profile("smoke", grpo_max_steps=2, max_completion_length=16,
                              grpo_learning_rate=lr)  # fmt: skip
        return train_grpo(profile, smoke_grpo_rows, out, (_length_reward,),
                          loaded=load_policy(profile, None))  # fmt: skip

    first = run(5e-2)
    assert first.steps == 2 and first.resumed_from is None
    second = run(1e-2)
    assert second.resumed_from is None, "a changed grpo_learning_rate must not resume"
    assert second.steps == 2 and len(second.history) == 2
    beside = json.loads((out / ADAPTER / TRAINING_RECORD).read_text())
    assert beside["settings"]["trainer"]["learning_rate"] == 1e-2


def test_an_interrupted_grpo_run_with_the_same_settings_resumes(
    tmp_path, monkeypatch, smoke_grpo_rows
):
    """The fingerprint is stable: the same rows, settings and starting weights (a fresh LoRA is
    seeded) in a new policy object give the same one, so a disconnect costs only the lost steps."""
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "grpo"
    profile = get_profile("smoke", grpo_max_steps=3, max_completion_length=16)  # save_steps 1

    def run(**kwargs):
        return train_grpo(profile, smoke_grpo_rows, out, (_length_reward,),
                          loaded=load_policy(profile, None), **kwargs)  # fmt: skip

    with pytest.raises(KeyboardInterrupt):
        run(callbacks=[StopAt(2)])
    result = run()
    assert Path(result.resumed_from).name == "checkpoint-1" and result.steps == 3


@pytest.fixture(scope="module")
def smoke_grpo_rows(tmp_path_factory):

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSRM_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
        run = build_smoke_run("g")
    return grpo_rows_of(run)[:4]


# --- a stage that trained into nonsense fails --------------------------------------------------


def test_an_absurd_sft_learning_rate_fails_and_keeps_the_earlier_adapter(tmp_path, monkeypatch):
    """lr 1e6 on the tiny model: the loss stays finite, the weights reach about 1e6."""
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "sft"
    train_sft(get_profile("smoke", sft_max_steps=2), judge_rows(4), out)
    before = sha256_of(out / ADAPTER)
    with pytest.raises(TrainingError) as err:
        train_sft(get_profile("smoke", sft_max_steps=3, sft_learning_rate=1e6), judge_rows(4), out)
    msg = str(err.value)
    assert "adapter weight" in msg and "learning_rate = 1e+06" in msg
    assert "lower sft_learning_rate" in msg
    assert sha256_of(out / ADAPTER) == before
    # the diverged run is never resumed, even with the same settings
    record = json.loads((out / TRAINING_RECORD).read_text())
    assert record["status"] == "diverged"


def test_an_absurd_grpo_learning_rate_fails(tmp_path, monkeypatch, smoke_grpo_rows):
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    profile = get_profile("smoke", grpo_max_steps=2, max_completion_length=16,
                          grpo_learning_rate=1e6)  # fmt: skip
    with pytest.raises(TrainingError) as err:
        train_grpo(profile, smoke_grpo_rows, tmp_path / "grpo", (_length_reward,),
                   loaded=load_policy(profile, None))  # fmt: skip
    msg = str(err.value)
    assert "adapter weight" in msg and "lower grpo_learning_rate" in msg
    assert not (tmp_path / "grpo" / ADAPTER).exists()


def test_grpo_refuses_to_start_from_a_non_finite_sft_adapter(run_copy, capsys):
    from safetensors.torch import load_file, save_file

    file = run_copy / "sft" / ADAPTER / "adapter_model.safetensors"
    tensors = load_file(str(file))
    name = sorted(n for n in tensors if "lora_B" in n)[0]
    tensors[name][0, 0] = float("nan")
    save_file(tensors, str(file))
    capsys.readouterr()
    assert main(["grpo", "--run", "f", "--set", "sft_max_steps=2"]) == 2
    err = capsys.readouterr().err
    assert str(file) in err and name in err and "NaN" in err
    assert "persrm sft --force" in err
    record = RunFolder.open(run_copy).manifest.stages["04_grpo_unsloth"]
    assert record.status == "failed" and not (run_copy / "grpo" / ADAPTER).exists()


# --- a stage on a run that does not exist ----------------------------------------------------


@pytest.mark.parametrize("command", ["sft", "grpo"])
def test_a_stage_on_a_missing_run_leaves_nothing_behind(command, runs_root, capsys):
    build_smoke_run("other")
    assert main([command, "--run", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "run 'nosuch'" in err and str(runs_root) in err
    assert "persrm run --profile smoke --run nosuch" in err and "other" in err
    assert not (runs_root / "nosuch").exists()
