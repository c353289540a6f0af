"""Run folders and manifests: hand-over between notebooks, skip, resume, and clear errors."""

from __future__ import annotations

import json

import pytest

from persrm_utils.errors import ConfigError, ManifestError, MissingInputsError
from persrm_utils.run.folders import RunFolder, sha256_of
from persrm_utils.run.session import start_stage
from persrm_utils.run.stages import STAGE_NAMES, get_stage


def _finish(run: RunFolder, stage: str, name: str = "out.txt") -> None:
    run.start_stage(stage, config={"x": 1})
    run.file(name).write_text(f"made by {stage}")
    run.finish_stage(stage, [name])


def test_create_writes_a_manifest_and_reopens(runs_root):
    run = RunFolder.create("r1", "smoke")
    data = json.loads((runs_root / "r1" / "manifest.json").read_text())
    assert data["run"] == "r1" and data["profile"] == "smoke" and data["stages"] == {}
    again = RunFolder.create("r1", "smoke")
    assert again.path == run.path


def test_stage_record_has_config_versions_hardware_timing_and_hashes(runs_root):
    run = RunFolder.create("r1", "smoke")
    _finish(run, "00_setup", "environment.json")
    rec = RunFolder.open(run.path).manifest.stages["00_setup"]
    assert rec.status == "done" and rec.config == {"x": 1}
    assert rec.versions["torch"] and rec.versions["transformers"] == "5.17.0"
    assert rec.hardware["cpu_count"] >= 1
    assert rec.seconds is not None and rec.finished_at >= rec.started_at
    art = rec.artifacts[0]
    assert art.path == "environment.json"
    assert art.sha256 == sha256_of(run.path / "environment.json")
    assert art.bytes == len("made by 00_setup")


def test_a_stage_before_its_inputs_names_the_notebook_to_run_first(runs_root):
    run = RunFolder.create("r1", "smoke")
    _finish(run, "00_setup")
    with pytest.raises(MissingInputsError) as err:
        run.start_stage("02_synthetic_pairs")
    msg = str(err.value)
    assert "02_synthetic_pairs needs the outputs of 01_exemplars" in msg
    assert "has not been run" in msg
    assert "Run notebooks/01_exemplars.ipynb first" in msg
    assert "persrm run --profile smoke --run r1 --from 01_exemplars" in msg


def test_inputs_deleted_after_finishing_count_as_missing(runs_root):
    run = RunFolder.create("r1", "smoke")
    _finish(run, "00_setup")
    assert run.is_done("00_setup")
    (run.path / "out.txt").unlink()
    assert not run.is_done("00_setup")
    with pytest.raises(MissingInputsError, match="some of its files are gone"):
        run.require("01_exemplars")


def test_failed_stage_blocks_the_next_and_rerun_counts_as_resume(runs_root):
    run = RunFolder.create("r1", "smoke")
    run.start_stage("00_setup")
    run.fail_stage("00_setup", "boom")
    with pytest.raises(MissingInputsError, match="is 'failed'"):
        run.require("01_exemplars")
    rec = run.start_stage("00_setup")
    assert rec.runs == 2 and rec.status == "running"


def test_session_resumes_an_interrupted_stage(runs_root, capsys):
    first = start_stage("00_setup", "smoke", "r2")
    assert not first.resumed
    second = start_stage("00_setup", "smoke", "r2")  # the kernel died before finish()
    assert second.resumed and "resuming" in capsys.readouterr().out
    second.file("environment.json").write_text("{}")
    second.finish(["environment.json"])
    assert RunFolder.open(second.path).is_done("00_setup")


def test_reopening_with_another_profile_is_refused(runs_root):
    RunFolder.create("r1", "smoke")
    with pytest.raises(ConfigError, match="was made with profile 'smoke'"):
        RunFolder.create("r1", "cpu")
    with pytest.raises(ConfigError, match="another name"):
        RunFolder.create("r1", "smoke", {"model_path": "/elsewhere"})
    # overrides that do not change the model are fine: e.g. more steps for one stage
    assert RunFolder.create("r1", "smoke", {"sft_max_steps": 2}).manifest.profile == "smoke"


@pytest.mark.parametrize("name", ["../escape", "a b", "", "/abs"])
def test_bad_run_names(runs_root, name):
    with pytest.raises(ConfigError, match="not a valid folder name"):
        RunFolder.create(name, "smoke")


def test_corrupt_manifest_json_names_file_line_and_fix(runs_root):
    run = RunFolder.create("r1", "smoke")
    (run.path / "manifest.json").write_text('{\n  "run": "r1",\n  "profile": smoke\n}')
    with pytest.raises(ManifestError) as err:
        RunFolder.open(run.path)
    msg = str(err.value)
    assert "manifest.json is not valid JSON (line 3" in msg
    assert "delete the run folder" in msg


def test_manifest_with_a_bad_field_names_it(runs_root):
    run = RunFolder.create("r1", "smoke")
    _finish(run, "00_setup")
    data = json.loads((run.path / "manifest.json").read_text())
    data["stages"]["00_setup"]["status"] = "halfway"
    (run.path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"field 'stages\.00_setup\.status'"):
        RunFolder.open(run.path)


def test_opening_a_folder_without_manifest(tmp_path):
    with pytest.raises(ManifestError, match=r"Run notebooks/00_setup\.ipynb first"):
        RunFolder.open(tmp_path)


def test_saving_leaves_no_temporary_files(runs_root):
    run = RunFolder.create("r1", "smoke")
    _finish(run, "00_setup")
    # the (empty) lock file stays: unlinking a lock file other processes may hold is a race
    assert sorted(p.name for p in run.path.iterdir()) == [".manifest.lock", "manifest.json",
                                                          "out.txt"]  # fmt: skip


def test_folder_artifacts_are_hashed_by_content(runs_root):
    run = RunFolder.create("r1", "smoke")
    run.start_stage("00_setup")
    (run.file("adapter/a.bin")).write_bytes(b"1234")
    rec = run.finish_stage("00_setup", ["adapter"])
    before = rec.artifacts[0].sha256
    (run.path / "adapter" / "a.bin").write_bytes(b"1235")
    assert sha256_of(run.path / "adapter") != before


def test_stage_lookup_by_number_and_unknown_stage():
    assert get_stage("2").name == "02_synthetic_pairs"
    assert get_stage("03").name == "03_sft_qlora"
    assert get_stage("05_evaluation.ipynb").name == "05_evaluation"
    assert STAGE_NAMES[0] == "00_setup" and len(STAGE_NAMES) == 7
    with pytest.raises(ConfigError, match="Unknown stage '07'"):
        get_stage("07")
