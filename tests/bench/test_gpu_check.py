"""The GPU check's plumbing, exercised on a CPU so that it cannot rot between GPU loans.

The dry run drives every part through its own process with the tiny model and one step each;
the other tests prove that a failing or overrunning part leaves the report with everything else,
and check the pure pieces (ratios, the T4 fit, the markdown) on made-up figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from persrm_utils.bench.check_options import PARTS, STATUSES
from persrm_utils.bench.gpu_report import CAVEAT, render_markdown
from persrm_utils.bench.mechanics import compare
from persrm_utils.bench.timebox import run_capped

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


#: Caps far above the GPU defaults: these tests check the plumbing, not this CPU's speed, and a
#: shared CI machine can be many times slower than an idle one.
LOOSE = [arg for part in PARTS for arg in ("--cap", f"{part}=600")]


def run_script(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = run_script("--dry-run", "--out", str(out), *LOOSE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text()), out


@pytest.mark.slow
def test_dry_run_reports_every_part(dry_run):
    report, out = dry_run
    assert report["dry_run"] is True and report["finished"]
    assert set(report["parts"]) == set(PARTS)
    for name, part in report["parts"].items():
        assert part["status"] == "ok", (name, part.get("error"), part.get("traceback"))
        assert isinstance(part["seconds"], float) and part["seconds"] <= part["cap_s"]

    env = report["parts"]["environment"]["figures"]
    assert env["gpu_name"] == "no GPU" and env["dtype"] == "float32"
    assert env["versions"]["trl"] and env["unsloth"]["importable"] is False

    mech = report["parts"]["mechanics"]["figures"]
    plain = mech["backends"]["transformers"]
    assert plain["status"] == "ok" and plain["sft"]["steps"] == 1 and plain["grpo"]["steps"] == 1
    assert isinstance(plain["sft"]["s_per_step"], float) and plain["grpo"]["s_per_step"] > 0
    assert mech["backends"]["unsloth"] == {"status": "skipped", "reason": "needs CUDA"}

    learning = report["parts"]["learning"]["figures"]
    assert set(learning["accuracy"]) == {"base", "sft", "grpo"}
    for row in learning["accuracy"].values():
        assert 0.0 <= row["accuracy"] <= 1.0 and row["n_pairs"] >= 1
    assert learning["sft"]["steps"] == 1 and learning["grpo"]["steps"] == 1
    assert isinstance(learning["grpo"]["reward_curve"][0]["reward"], float)

    judging = report["parts"]["judging"]["figures"]
    assert judging["one_at_a_time_pairs_per_s"] > 0 and judging["batched_pairs_per_s"] > 0
    assert judging["identical_completions"] is True  # greedy on a CPU: bit-identical

    page = (out / "gpu_check.md").read_text()
    assert CAVEAT in page and "GPU: **no GPU**" in page
    assert all(f"## {name}: ok" in page for name in PARTS)


def test_a_failing_part_leaves_the_others(tmp_path):
    proc = run_script("--dry-run", "--out", str(tmp_path), "--parts", "environment,judging",
                      "--fail-part", "judging", *LOOSE)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = report["parts"]
    assert parts["environment"]["status"] == "ok" and parts["environment"]["figures"]["dtype"]
    assert parts["judging"]["status"] == "failed"
    assert "injected" in parts["judging"]["error"]
    assert parts["mechanics"] == {"status": "skipped", "reason": "not selected (--parts)"}
    assert "## judging: failed" in (tmp_path / "gpu_check.md").read_text()


def test_a_part_past_its_cap_is_stopped_and_reported(tmp_path):
    # 0.3 s, tripled in a dry run: far less than importing torch takes.
    proc = run_script("--dry-run", "--out", str(tmp_path), "--parts", "judging",
                      "--cap", "judging=0.3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    part = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]["judging"]
    assert part["status"] == "timeout" and "cap" in part["error"]


@pytest.mark.parametrize(
    "args",
    [["--parts", "nonsense"], ["--cap", "judging"], ["--cap", "nowhere=5"], ["--eval-batch", "0"]],
)
def test_bad_arguments_exit_non_zero(args, tmp_path):
    proc = run_script("--dry-run", "--out", str(tmp_path), *args)
    assert proc.returncode == 2 and "error" in proc.stderr
    assert not (tmp_path / "gpu_check.json").exists()


def test_run_capped_kills_the_whole_process_group():
    code = "import subprocess, time; subprocess.Popen(['sleep', '30']); time.sleep(30)"
    start = time.monotonic()
    run = run_capped([sys.executable, "-c", code], timeout=1.5)
    assert run.timed_out and time.monotonic() - start < 10


def test_compare_gives_ratios_and_the_t4_fit():
    results = {
        "transformers": {"sft": {"s_per_step": 2.0, "peak_vram_reserved_gib": 12.0},
                         "grpo": {"s_per_step": 10.0, "peak_vram_reserved_gib": 15.0}},
        "unsloth": {"sft": {"s_per_step": 1.0, "peak_vram_reserved_gib": 6.0},
                    "grpo": {"s_per_step": 5.0, "peak_vram_reserved_gib": 9.0}},
    }  # fmt: skip
    out = compare(results)
    assert out["sft_s_per_step_unsloth_over_plain"] == 0.5
    assert out["grpo_peak_vram_reserved_gib_unsloth_over_plain"] == 0.6
    assert out["transformers_t4_fit"] == "does not fit"
    assert out["unsloth_t4_fit"] == "fits with margin"
    assert compare({"transformers": {"status": "skipped"}}) == {}


def test_markdown_names_the_gpu_and_survives_partial_reports():
    report = {
        "dry_run": False,
        "started": "2026-01-01T00:00:00+00:00",
        "parts": {
            "environment": {"status": "ok", "figures": {"gpu_name": "NVIDIA T4", "dtype": "f16"}},
            "mechanics": {"status": "timeout", "error": "stopped at its cap", "figures": {
                "backends": {"unsloth": {"status": "ok", "sft": {"s_per_step": 1.5}}}}},
            "learning": {"status": "skipped", "reason": "Reuters C50 not found"},
            "judging": {"status": "pending"},
        },
    }  # fmt: skip
    page = render_markdown(report)
    assert "GPU: **NVIDIA T4**" in page and CAVEAT in page
    assert "## mechanics: timeout" in page and "| unsloth | ok | 1.5 |" in page
    assert "reason: Reuters C50 not found" in page and "## judging: pending" in page
    assert set(STATUSES) == {"ok", "failed", "skipped", "timeout"}


def test_random_model_dir_builds_the_architecture_it_is_given(tmp_path):
    from persrm_utils.bench.mechanics import QWEN25_1_5B, random_model_dir

    small = QWEN25_1_5B | dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=1000,
    )  # fmt: skip
    target = random_model_dir(tmp_path / "model", small)
    config = json.loads((target / "config.json").read_text())
    assert config["vocab_size"] == 1000 and config["tie_word_embeddings"] is True
    assert (target / "tokenizer.json").is_file()
    assert random_model_dir(target, small) == target  # built once


def test_caps_leave_unsloth_room_and_the_total_stays_under_ten_minutes():
    """At 195 s for the whole mechanics part, Unsloth had under 93 s for a cold import, 4-bit
    quantization on load, SFT steps and the compile of its first GRPO step: it timed out
    instead of recording a result."""
    from persrm_utils.bench.check_options import DEFAULT_CAPS, UNSLOTH_SHARE, CheckOptions
    from persrm_utils.bench.gpu_parts import backend_seconds

    assert sum(DEFAULT_CAPS.values()) <= 570  # plus start-up: under 10 minutes
    assert CheckOptions().mechanics_steps == (2, 1)
    left = DEFAULT_CAPS["mechanics"] - 15 - 40  # the part's margin, a 1.5B build
    unsloth = backend_seconds(left, ["unsloth", "transformers"])
    assert unsloth == pytest.approx(UNSLOTH_SHARE * left) and unsloth >= 140
    assert backend_seconds(left - unsloth, ["transformers"]) == left - unsloth
    assert backend_seconds(100, ["transformers", "unsloth"]) == 50


def test_unsloth_import_names_missing_dependencies(monkeypatch):
    """unsloth's trainer patching imports datasets and pyarrow: on an image without them the
    report showed only the last traceback line from deep inside unsloth."""
    import importlib.util

    from persrm_utils.bench import gpu_parts
    from persrm_utils.bench.timebox import Deadline

    real = importlib.util.find_spec
    present = {"unsloth": object(), "unsloth_zoo": object(), "pyarrow": None}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: present.get(name, real(name)))
    out = gpu_parts._unsloth_import(Deadline.after(30))
    assert out["importable"] is False and out["detail"].startswith("pyarrow missing")
