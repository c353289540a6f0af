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
from persrm_utils.bench.timebox import failure_summary, run_capped

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
    facts = plain["grpo_inputs"]  # recorded before GRPO: what decides ids and row lengths
    assert facts["longest_prompt_tokens"] + facts["max_completion_length"] <= 256
    assert facts["embedding_rows"] == facts["config_vocab_size"] >= facts["len_tokenizer"]

    learning = report["parts"]["learning"]["figures"]
    assert set(learning["accuracy"]) == {"base", "sft", "grpo"}
    for row in learning["accuracy"].values():
        assert 0.0 <= row["accuracy"] <= 1.0 and row["n_pairs"] >= 1
    assert learning["sft"]["steps"] == 1 and learning["grpo"]["steps"] == 1
    chosen = learning["user_swap_items"]  # the teacher lever runs as in notebook 03
    assert chosen["candidates"] == 4 and chosen["used"] == min(1, chosen["kept"]), chosen
    assert isinstance(learning["grpo"]["reward_curve"][0]["reward"], float)
    # notebook 05's personalization figures, the cross-author set among them (smoke: 6 items)
    for judge in ("sft", "grpo"):
        personal = learning["personalization"][judge]
        assert personal["exemplar_effect"]["n_pairs"] >= 1 and personal["user_swap"]["n_pairs"]
        cross = personal["cross_author_set"]
        assert cross["items"] == 6
        forms = {(r["form"], r["model"].endswith("k=0")) for r in cross["rows"]}
        assert forms == {(f, blind) for f in ("opening", "no opening") for blind in (False, True)}

    judging = report["parts"]["judging"]["figures"]
    assert judging["one_at_a_time_pairs_per_s"] > 0 and judging["batched_pairs_per_s"] > 0
    assert judging["identical_completions"] is True  # greedy on a CPU: bit-identical

    page = (out / "gpu_check.md").read_text()
    assert CAVEAT in page and "GPU: **no GPU**" in page
    lines = page.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| judge | user-swap |"))
    rows = lines[header + 2 : header + 4]  # under the header's separator: one row per judge
    assert [r.split(" | ")[0] for r in rows] == ["| sft", "| grpo"]
    assert all(r.count(" | ") == 7 and "effect" in r.split(" | ")[-1] for r in rows), rows
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


#: A child that dies the way the first GPU check's Unsloth GRPO child died: a call chain deeper
#: than the kept tail, relayed through ``nn.Module``-like ``_call_impl`` frames, an exception,
#: then CUDA's "[W...]" warnings printed at exit.
DEEP_CRASH = """
import atexit, sys
for thread in range(3):  # the kernel's own assert comes first, once per thread
    print("Indexing.cu:1422: indexSelectLargeIndex: block: [0,0,0], thread: [0,0,0] "
          "Assertion `srcIndex < srcSelectDimSize` failed.", file=sys.stderr)
def _call_impl(f, *a):
    return f(*a)
src = ["def layer_59(x):\\n    raise IndexError('index out of range in self')"]
for i in range(59):
    src.append(f"def layer_{i}(x):\\n    return _call_impl(layer_{i + 1}, x + 1)")
exec("\\n".join(src))
def train_grpo_outermost():
    return layer_0(0)
atexit.register(lambda: print("[W1204 01:38:21] Warning: device-side assert (~CUDAEvent)\\n" * 30,
                              file=sys.stderr))
train_grpo_outermost()
"""


def test_a_crash_keeps_its_whole_call_chain_in_the_log_and_the_summary(tmp_path):
    """The first GPU check kept only stderr's last 1500 characters: every frame of the Unsloth
    GRPO crash but torch's ``F.embedding`` was lost, and the cause could not be found. The whole
    output now goes to a log, and the error names each frame once, innermost last."""

    log = tmp_path / "unsloth.log"
    run = run_capped([sys.executable, "-c", DEEP_CRASH], timeout=60, log=log)
    assert run.returncode == 1 and not run.timed_out
    assert "train_grpo_outermost" not in run.stderr  # the plain tail lost the outer frames
    whole = log.read_text()
    assert "# exit code: 1" in whole and "train_grpo_outermost" in whole
    assert whole.split("## stderr")[1].count("[W1204") == 30
    frames = run.failure.splitlines()
    assert frames[0] == "traceback (innermost last):"
    assert "in layer_0" in run.failure and "in layer_59" in run.failure
    assert "_call_impl" not in run.failure and "[W1204" not in run.failure
    assert frames[-2] == "IndexError: index out of range in self"
    assert frames[-1].startswith("device: Indexing.cu:1422: indexSelectLargeIndex")
    assert run.failure.count("Assertion") == 1
    assert len(run.failure) <= 3000
    short = failure_summary(whole, limit=400)  # too long: the outermost frames go first
    assert len(short) <= 400 and "in layer_59" in short and "in layer_0\n" not in short
    assert failure_summary("no traceback here") == "no traceback here"


def test_the_stand_in_rows_fill_the_t4_length_exactly_and_never_exceed_it():
    """The first GPU check's stand-in GRPO rows were 1670 + 384 = 2054 tokens against the t4
    profile's 2048 (the chat template's overhead was guessed): only Unsloth cuts such rows, and
    its GRPO step died there. The rows are now measured to leave exactly the completion's room."""
    from transformers import AutoTokenizer

    from persrm_utils.bench.mechanics import synthetic_rows
    from persrm_utils.models.tiny import seed_texts, tiny_model_dir
    from persrm_utils.profiles import get_profile
    from persrm_utils.train.grpo import check_prompt_lengths, prompt_tokens

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir(texts=seed_texts()))
    t4 = get_profile("t4")
    sft, grpo = synthetic_rows(tokenizer, t4, n=4)
    room = t4.max_seq_length - t4.max_completion_length
    assert room - 4 <= check_prompt_lengths(grpo, tokenizer, t4) <= room  # worst case, in range
    chat = tokenizer.apply_chat_template(sft[0]["messages"], tokenize=False)
    assert len(tokenizer(chat, add_special_tokens=False)["input_ids"]) <= t4.max_seq_length
    assert prompt_tokens(tokenizer, grpo[0]["prompt"]) == prompt_tokens(
        tokenizer, sft[0]["messages"][:2]
    )


def test_an_out_of_range_id_is_a_python_error_naming_the_table_and_the_ids(monkeypatch, tmp_path):
    """On a GPU an id past the embedding table is a device-side assert with no useful frame."""
    import torch

    from persrm_utils.bench.mechanics import guard_embedding_ids, vocab_facts
    from persrm_utils.models.loader import load_model
    from persrm_utils.profiles import get_profile

    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    smoke = get_profile("smoke")
    loaded = load_model(smoke)
    rows = loaded.model.get_input_embeddings().weight.shape[0]
    handle = guard_embedding_ids(loaded.model)
    loaded.model(input_ids=torch.tensor([[0, rows - 1]]))  # in range: untouched
    with pytest.raises(
        ValueError, match=rf"min 0, max {rows}, table rows {rows}, ids shape \(1, 2\)"
    ):
        loaded.model(input_ids=torch.tensor([[0, rows]]))
    with pytest.raises(ValueError, match="min -1"):
        loaded.model(input_ids=torch.tensor([[-1, 3]]))
    handle.remove()
    with pytest.raises(IndexError):  # without the guard: torch's own, less telling error
        loaded.model(input_ids=torch.tensor([[0, rows]]))
    prompt = [{"role": "user", "content": "Which text did she write?"}]
    facts = vocab_facts(loaded, smoke, [prompt])
    assert facts["embedding_rows"] == rows == facts["config_vocab_size"]
    assert facts["len_tokenizer"] == len(loaded.tokenizer)
    assert facts["pad_id"]["tokenizer"] == loaded.tokenizer.pad_token_id
    assert facts["longest_prompt_tokens"] > 5 and facts["max_completion_length"] == 128


def test_markdown_puts_a_failed_backends_call_chain_under_the_table():
    error = "traceback (innermost last):\nunsloth/rl.py:10 in step\nIndexError: out of range"
    mech = {"backends": {"unsloth": {"status": "failed", "error": error, "log": "w/unsloth.log"}}}
    page = render_markdown({"parts": {"mechanics": {"status": "ok", "figures": mech}}})
    assert "| unsloth | failed | – | – | – | – | IndexError: out of range |" in page
    assert "unsloth failed (whole output: `w/unsloth.log`):" in page
    assert "```\n" + error + "\n```" in page


#: Installed here for the notebooks, absent from a GPU image and from the wheelhouse.
JUPYTER_ONLY = ("nbformat", "nbclient", "papermill", "ipykernel", "jupyter_client", "ipywidgets",
                "traitlets", "jsonschema")  # fmt: skip
BLOCKED_IMPORT = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked}:
            raise ImportError(f"{{name}} is not on the GPU image")
sys.meta_path.insert(0, Block())
import persrm_utils.bench.gpu_check, persrm_utils.bench.gpu_parts, persrm_utils.bench.mechanics
import persrm_utils.bench.learning_check, persrm_utils.bench.judging_speed, persrm_utils.train
print("imported")
"""


def test_the_gpu_check_and_the_trainers_import_without_jupyter():
    """The first GPU check died at import: the training code reached ``nbformat`` (through the
    notebook runner), which neither the GPU image nor the offline wheel set had."""
    code = BLOCKED_IMPORT.format(blocked=set(JUPYTER_ONLY))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr[-2000:]


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
