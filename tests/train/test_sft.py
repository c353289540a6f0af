"""SFT for real on the tiny model: training, resume from a checkpoint, the adapter, and DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from smoke_run import build_smoke_run
from training_helpers import StopAt, judge_rows

from persrm_utils.by_hand.memory import ARCHS
from persrm_utils.profiles import get_profile
from persrm_utils.run.folders import RunFolder
from persrm_utils.train.sft import adapter_tensor_norms, load_with_adapter, train_sft
from persrm_utils.train.trainer import last_checkpoint


def test_sft_trains_lora_and_saves_a_nonzero_adapter(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    profile = get_profile("smoke", sft_max_steps=4, sft_learning_rate=5e-3)
    result = train_sft(profile, judge_rows(), tmp_path / "sft", resume=False)
    assert result.steps == 4 and len(result.losses) == 4
    assert result.end_loss < result.start_loss
    norms = adapter_tensor_norms(Path(result.adapter_dir))
    b = [v for k, v in norms.items() if "lora_B" in k]
    assert b and all(v > 0 for v in b), "LoRA B starts at zero: non-zero means it learned"
    log = json.loads((tmp_path / "sft" / "train_log.json").read_text())
    assert [s for s, _ in log["losses"]] == [1, 2, 3, 4]

    # the adapter changes the model's outputs on the same input
    from persrm_utils.models.loader import load_model

    base = load_model(profile)
    tuned = load_with_adapter(profile, Path(result.adapter_dir))
    batch = base.tokenizer(["Pair 99: which response, A or B?"], return_tensors="pt")
    with torch.no_grad():
        diff = (base.model(**batch).logits - tuned.model(**batch).logits).abs().max()
    assert diff > 1e-4


def test_held_out_rows_give_validation_curves_that_end_at_the_last_step(tmp_path, monkeypatch):
    """Notebook 03 plots the training loss beside validation losses: without them a loss near
    zero could not be told apart from memorising. Each named set is evaluated at every third of
    the run, the last at the last step (7 steps: at 3, 6 and 7; floor division gave 2, 4, 6 and
    7, and run cpu-e spent a measurement on steps 36 and 38 of 38); an empty set is left out.
    """
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    profile = get_profile("smoke", sft_max_steps=7)
    held_out = {"trained_types": judge_rows()[:3], "other_types": []}
    result = train_sft(profile, judge_rows(), tmp_path / "sft", resume=False, eval_rows=held_out)
    assert list(result.eval_losses) == ["trained_types"]
    steps = [s for s, _ in result.eval_losses["trained_types"]]
    assert steps == [3, 6, 7]
    assert all(v > 0 for _, v in result.eval_losses["trained_types"])
    log = json.loads((tmp_path / "sft" / "train_log.json").read_text())
    assert [s for s, _ in log["eval_losses"]["trained_types"]] == steps

    longer = get_profile("smoke", sft_max_steps=12)  # every 4 steps, the last one included
    result = train_sft(longer, judge_rows(), tmp_path / "sft12", resume=False, eval_rows=held_out)
    assert [s for s, _ in result.eval_losses["trained_types"]] == [4, 8, 12]


def test_interrupted_sft_resumes_from_the_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    profile = get_profile("smoke", sft_max_steps=6)  # save_steps = 2
    out = tmp_path / "sft"
    with pytest.raises(KeyboardInterrupt):
        train_sft(profile, judge_rows(), out, callbacks=[StopAt(3)])
    assert Path(last_checkpoint(out)).name == "checkpoint-2"
    saved = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    before = {e["step"]: e["loss"] for e in saved["log_history"] if "loss" in e}
    assert sorted(before) == [1, 2]
    result = train_sft(profile, judge_rows(), out)
    assert Path(result.resumed_from).name == "checkpoint-2"
    assert result.steps == 6
    assert [s for s, _ in result.losses] == [1, 2, 3, 4, 5, 6]
    # steps 1-2 come back from the checkpoint unchanged: restored, not trained again
    assert {s: v for s, v in result.losses if s <= 2} == before
    log = json.loads((out / "train_log.json").read_text())
    assert [s for s, _ in log["losses"]] == [1, 2, 3, 4, 5, 6]


def test_lora_arithmetic_matches_peft_on_a_real_architecture():
    """The memory table's parameter counts must be right, or its GB figures mean nothing."""
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    arch = ARCHS["SmolLM2-135M"]
    small = LlamaConfig(hidden_size=arch.hidden, intermediate_size=arch.intermediate,
                        num_hidden_layers=2, num_attention_heads=arch.heads,
                        num_key_value_heads=arch.kv_heads, vocab_size=arch.vocab,
                        tie_word_embeddings=True)  # fmt: skip
    model = LlamaForCausalLM(small)
    expected = arch.lora_parameters(8) // arch.layers * 2
    peft = get_peft_model(model, __import__("persrm_utils.models.loader").models.loader.lora_config(
        get_profile("cpu", lora_r=8)))  # fmt: skip
    trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    assert trainable == expected


@pytest.mark.slow
def test_sft_stage_under_torchrun_with_two_cpu_processes(runs_root, tmp_path):
    """DDP over gloo: two ranks train, rank 0 alone writes the adapter and the manifest."""
    build_smoke_run("ddp")
    env = {**os.environ, "PERSRM_RUNS_DIR": str(runs_root), "OMP_NUM_THREADS": "1",
           "PERSRM_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29533", "-m",
           "persrm_utils.cli", "sft", "--profile", "smoke", "--run-name", "ddp",
           "--set", "sft_max_steps=2"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunFolder.open(runs_root / "ddp")
    record = run.manifest.stages["03_sft_qlora"]
    assert record.status == "done" and record.runs == 1
    summary = json.loads((run.path / "sft" / "summary.json").read_text())
    assert summary["sft"]["steps"] == 2
    assert (run.path / "sft" / "adapter" / "adapter_model.safetensors").is_file()
    assert proc.stdout.count("03_sft_qlora: 2 steps") == 1, "only rank 0 reports and records"
