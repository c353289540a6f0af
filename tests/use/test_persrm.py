"""The trained judge as a tool: `persrm judge` (one pair, a JSONL batch), PersRM in Python, and
`persrm export`, on a run whose SFT adapter is trained here on the tiny model (stage 03 for real,
two steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persrm_utils.cli import main
from persrm_utils.errors import DataError
from persrm_utils.run.folders import RunFolder
from persrm_utils.use.export import export_run
from persrm_utils.use.persrm import PersRM, read_exemplars_file

MINE = [
    "I started running in the dark months. The first week was miserable, the second worse.",
    "Our kitchen table is where everything happens. Homework, arguments, a puzzle.",
    "The train was late again, so I read. Forty minutes is a long time on a platform.",
]
PROMPT = "Write about your morning."
A = "I woke before the alarm. The kettle was slow, so I read two pages of a novel."
B = "OMG what a morning!!! Coffee everywhere, totally crazy, best day ever!!!"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A smoke run through 03 (SFT adapter, 2 steps); runs folder and cache kept for the module."""
    from smoke_run import build_smoke_run

    from persrm_utils.train.commands import run_sft_stage

    root = tmp_path_factory.mktemp("judge")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSRM_RUNS_DIR", str(root / "runs"))
        mp.setenv("PERSRM_CACHE_DIR", str(root / "cache"))
        run = build_smoke_run("j")
        build_smoke_run("untrained")
        run_sft_stage("smoke", "j", {"sft_max_steps": 2})
        files = root / "files"
        files.mkdir()
        (files / "mine.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in MINE))
        (files / "b.txt").write_text(B + "\n")
        yield {"run": run.path, "files": files, "root": root}


@pytest.fixture
def env(trained, monkeypatch):
    monkeypatch.setenv("PERSRM_RUNS_DIR", str(trained["root"] / "runs"))
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(trained["root"] / "cache"))
    return trained


def test_judge_one_pair_from_the_command_line(env, capsys):
    files = env["files"]
    code = main(["judge", "--run", "j", "--exemplars", str(files / "mine.jsonl"),
                 "--prompt", PROMPT, "--a", A, "--b", str(files / "b.txt"), "--json"])  # fmt: skip
    assert code == 0
    got = json.loads(capsys.readouterr().out)
    assert got["agreement"] in ("agree", "disagree", "invalid")
    assert got["verdict"] == (got["verdict_ab"] if got["agreement"] == "agree" else None)
    assert got["exemplars_shown"] == 2  # the smoke profile's max_exemplars
    # the same answer through the Python API (the SFT adapter: this run has no GRPO yet)
    judge = PersRM.from_run("j")
    assert judge.info["adapter"] == "sft"
    res = judge.compare(MINE, PROMPT, A, B)
    assert (res.completion_ab, res.completion_ba) == (got["completion_ab"], got["completion_ba"])
    assert res.to_dict() | {"agree": res.agree} == got

    assert main(["judge", "--run", "j", "--exemplars", str(files / "mine.jsonl"),
                 "--a", A, "--b", B]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.startswith("verdict: ") and "order A,B: " in out and "reasoning: " in out


def test_judge_a_jsonl_batch(env, capsys):
    files = env["files"]
    batch = files / "pairs.jsonl"
    rows = [
        {"id": "p1", "prompt": PROMPT, "a": A, "b": B},
        {"id": "p2", "a": B, "b": A},
        {"id": "p3", "a": A, "b": B, "exemplars": [MINE[2], MINE[0]]},
    ]
    batch.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = files / "out" / "verdicts.jsonl"
    code = main(["judge", "--run", str(env["run"]), "--exemplars", str(files / "mine.jsonl"),
                 "--batch", str(batch), "--out", str(out), "--batch-size", "4"])  # fmt: skip
    assert code == 0
    assert "3 pairs judged by persrm:j:sft" in capsys.readouterr().out
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["p1", "p2", "p3"]
    # batched answers are the ones each pair gets on its own
    judge = PersRM.from_run("j", batch_size=1)
    one = judge.compare(MINE, PROMPT, A, B)
    assert lines[0]["completion_ab"] == one.completion_ab
    assert lines[0]["completion_ba"] == one.completion_ba
    three = judge.compare([MINE[2], MINE[0]], None, A, B)
    assert lines[2]["completion_ab"] == three.completion_ab


def test_export_reloads_with_plain_transformers_and_gives_the_same_verdicts(env, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export_run("j", tmp_path / "export")
    assert {"config.json", "model.safetensors", "README.md", "persrm.json"} <= {
        p.name for p in out.iterdir()}  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(out)  # no peft, no run folder
    assert not hasattr(model, "peft_config")
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert "<|im_start|>" in tokenizer.chat_template

    items = [{"exemplars": MINE, "prompt": PROMPT, "a": A, "b": B},
             {"exemplars": MINE[:1], "prompt": PROMPT, "a": B, "b": A}]  # fmt: skip
    from_run = PersRM.from_run("j").compare_many(items)
    exported = PersRM.from_pretrained(out).compare_many(items)
    assert [r.verdict_ab for r in exported] == [r.verdict_ab for r in from_run]
    assert [r.verdict_ba for r in exported] == [r.verdict_ba for r in from_run]
    assert [r.completion_ab for r in exported] == [r.completion_ab for r in from_run]

    card = (out / "README.md").read_text()
    assert "run `j`" in card and "Profile: `smoke`" in card and "**SFT** LoRA adapter" in card
    assert "This model (SFT): not measured (the run has no eval/metrics.json" in card
    assert "train: 4 authors, 24 texts" in card and "Preference pairs: train" in card
    assert "upload_folder" in card  # how to push it, not done here


def test_the_card_states_only_the_run_s_measured_accuracy(env, tmp_path):
    eval_dir = env["run"] / "eval"
    eval_dir.mkdir(exist_ok=True)
    rows = [
        {"model": "random", "n_pairs": 8, "accuracy": 0.5, "ci_low": 0.25, "ci_high": 0.75},
        {"model": "SFT", "n_pairs": 8, "accuracy": 0.625, "ci_low": 0.5, "ci_high": 0.8125},
    ]
    (eval_dir / "metrics.json").write_text(json.dumps(rows))
    (eval_dir / "info.json").write_text(json.dumps({"data": "seed corpus, 4 pairs", "pairs": 8}))
    try:
        first = export_run("j", tmp_path / "export")
        with pytest.raises(DataError, match="pass --force"):
            export_run("j", first)
        out = export_run("j", first, force=True)
    finally:
        (eval_dir / "metrics.json").unlink()
        (eval_dir / "info.json").unlink()
    card = (out / "README.md").read_text()
    assert ("This model (SFT): accuracy 0.625 (95% CI 0.500 to 0.812) on 8 pairs of unseen "
            "test authors") in card  # fmt: skip
    assert "| random | 8 | 0.500 | 0.250 | 0.750 |" in card
    assert "Evaluation data: seed corpus, 4 pairs" in card


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def _fails(capsys, *args: str) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Fix:" in err
    return err


def test_judge_bad_input_names_the_file_and_the_fix(env, capsys, tmp_path):
    files = env["files"]
    mine = str(files / "mine.jsonl")
    err = _fails(capsys, "judge", "--run", "nope", "--exemplars", mine, "--a", A, "--b", B)
    assert "Run 'nope' not found" in err and "runs in" in err and "j" in err

    err = _fails(capsys, "judge", "--run", "untrained", "--exemplars", mine, "--a", A, "--b", B)
    assert "run 'untrained' has no trained adapter" in err
    assert "grpo/adapter" in err and "sft/adapter" in err and "--from 03" in err

    err = _fails(capsys, "judge", "--run", "j", "--exemplars", mine, "--a", "  ", "--b", B)
    assert "--a is empty" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    err = _fails(capsys, "judge", "--run", "j", "--exemplars", mine, "--a", A, "--b", str(empty))
    assert f"{empty}: --b is empty" in err

    wrong = tmp_path / "mine.jsonl"
    wrong.write_text(json.dumps({"text": MINE[0]}) + "\n" + json.dumps({"body": MINE[1]}) + "\n")
    err = _fails(capsys, "judge", "--run", "j", "--exemplars", str(wrong), "--a", A, "--b", B)
    assert f"{wrong}, line 2: this exemplar has no non-empty 'text'" in err
    assert "(its fields: body)" in err and '{"text": "a whole text you wrote"}' in err

    listing = tmp_path / "list.json"
    listing.write_text(json.dumps(MINE))
    err = _fails(capsys, "judge", "--run", "j", "--exemplars", str(listing), "--a", A, "--b", B)
    assert f"{listing}, line 1: holds a JSON list, not an object" in err

    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({"a": A}) + "\n")
    err = _fails(capsys, "judge", "--run", "j", "--exemplars", mine, "--batch", str(batch),
                 "--out", str(tmp_path / "o.jsonl"))  # fmt: skip
    assert f"{batch}, line 1, field 'b': missing field 'b'" in err
    assert not (tmp_path / "o.jsonl").exists()

    err = _fails(capsys, "judge", "--run", "j", "--a", A, "--b", B)
    assert "--exemplars is missing" in err

    one = tmp_path / "one.txt"
    one.write_text("Just one sentence here")
    with pytest.raises(DataError, match="only one sentence"):
        read_exemplars_file(one)


def test_export_bad_input(env, capsys, tmp_path):
    err = _fails(capsys, "export", "--run", "untrained", "--out", str(tmp_path / "x"))
    assert "has no trained adapter" in err and not (tmp_path / "x").exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    err = _fails(capsys, "export", "--run", "j", "--out", str(other), "--force")
    assert "was not written by persrm export" in err
    assert (other / "notes.txt").read_text() == "keep me"
    assert RunFolder.open(env["run"]).status("03_sft_qlora") == "done"


def test_from_pretrained_needs_an_export(tmp_path):
    with pytest.raises(DataError, match="not a folder written by `persrm export`"):
        PersRM.from_pretrained(tmp_path)
    assert Path(tmp_path).is_dir()
