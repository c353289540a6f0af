"""The `persrm` command as a user meets it: doctor, and one-paragraph errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from persrm_utils.cli import main


def _persrm(*args: str, env_extra: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "persrm_utils.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)  # fmt: skip


def test_doctor_recommends_a_cpu_profile_and_names_what_gpus_need(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert code == 0
    assert "[OK  ] transformers" in out and "[OK  ] trl" in out
    import torch

    if not torch.cuda.is_available():
        assert "Recommended profile: cpu" in out or "Recommended profile: smoke" in out
        assert "The GPU profiles need:" in out and "requirements/gpu.txt" in out
        assert "Qwen/Qwen2.5-1.5B-Instruct" in out


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["run", "--profile", "smok"], "Unknown profile 'smok'. Did you mean 'smoke'?"),
        (["run", "--set", "lora_rank=4"], "has no field 'lora_rank'"),
        (["run", "--set", "lora_r=-3"], "field 'lora_r' = -3 is not valid"),
        (["run", "--only", "09"], "Unknown stage '09'"),
        (["run", "--from", "01", "--only", "02"], "cannot be combined"),
    ],
)
def test_bad_input_is_one_paragraph_without_traceback(args, expect, runs_root):
    proc = _persrm(*args, env_extra={"PERSRM_RUNS_DIR": str(runs_root)})
    assert proc.returncode == 2
    assert expect in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "Fix:" in proc.stderr


def test_corrupt_manifest_through_the_command(runs_root):
    folder = runs_root / "broken"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{not json")
    proc = _persrm("run", "--run", "broken", env_extra={"PERSRM_RUNS_DIR": str(runs_root)})
    assert proc.returncode == 2
    assert "manifest.json is not valid JSON (line 1, column 2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_arguments_create_no_run_folder(runs_root):
    """Validation happens before anything is written: a typo leaves no half-made run behind."""
    for args in (["run", "--only", "09"], ["run", "--profile", "smok"], ["run", "--set", "x=1"]):
        assert _persrm(*args, env_extra={"PERSRM_RUNS_DIR": str(runs_root)}).returncode == 2
    assert not runs_root.exists() or not any(runs_root.iterdir())
