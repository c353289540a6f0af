"""The trained judge as a tool: `persrm judge` (one pair, a JSONL batch), PersRM in Python, and
`persrm export`, on a run whose SFT adapter is trained here on the tiny model (stage 03 for real,
two steps)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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

    err = _fails(capsys, "judge", "--run", "j", "--exemplars", mine, "--a", A, "--b", f" {A}\n")
    assert "field '--b': response A and response B are the same text" in err

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


# ----------------------------------------------------------------------------------------------
# PersRM.compare: what no judge can answer is refused, what it can is read the way a user means
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def judge(trained):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSRM_RUNS_DIR", str(trained["root"] / "runs"))
        mp.setenv("PERSRM_CACHE_DIR", str(trained["root"] / "cache"))
        yield PersRM.from_run("j")


def test_compare_refuses_what_no_judge_can_answer(judge):
    for none in ([], None, ()):  # the CLI's "--exemplars is missing", said in Python
        with pytest.raises(DataError, match="no exemplars: the judge needs the user's own texts"):
            judge.compare(none, PROMPT, A, B)
    with pytest.raises(DataError, match="field 'b': response A and response B are the same text"):
        judge.compare(MINE, PROMPT, A, A)
    with pytest.raises(DataError, match="the same text"):
        judge.compare(MINE, PROMPT, A, "  " + A.replace(" ", "\n  ") + "\n")
    with pytest.raises(DataError, match="field 'prompt': the prompt is a int, not a text"):
        judge.compare(MINE, 42, A, B)  # was a raw AttributeError from deep in the formatter
    with pytest.raises(DataError, match="exemplars is a int, not a list of texts"):
        judge.compare(42, PROMPT, A, B)
    items = [{"exemplars": MINE, "prompt": PROMPT, "a": A, "b": B},
             {"exemplars": MINE, "prompt": PROMPT, "a": B, "b": B}]  # fmt: skip
    with pytest.raises(DataError, match=r"field 'items\[1\]': response A and response B"):
        judge.compare_many(items)


def test_compare_reads_a_bare_string_as_one_exemplar(judge):
    one = judge.compare(MINE[0], PROMPT, A, B)  # was read one character at a time
    listed = judge.compare([MINE[0]], PROMPT, A, B)
    assert one.exemplars_shown == 1
    assert (one.completion_ab, one.completion_ba) == (listed.completion_ab, listed.completion_ba)
    assert judge.compare({"text": MINE[1]}, None, A, B).exemplars_shown == 1


def test_compare_fits_the_model_s_context_or_refuses(judge):
    limit = judge.model.config.max_position_embeddings
    assert limit == 4096  # the tiny model's context
    long = " ".join(
        f"Entry {k} of a diary that goes on and on, page after page." for k in range(900)
    )
    tokens = len(judge.tokenizer(long, add_special_tokens=False)["input_ids"])
    assert tokens > limit
    with pytest.warns(UserWarning, match=r"1 of 2 exemplars left out so that the judge's chat"):
        cut = judge.compare([MINE[0], long], PROMPT, A, B)
    assert cut.exemplars_shown == 1
    short = judge.compare([MINE[0]], PROMPT, A, B)
    assert (cut.completion_ab, cut.completion_ba) == (short.completion_ab, short.completion_ba)
    with pytest.raises(DataError, match=r"past the model's context of 4096 tokens"):
        judge.compare([long], PROMPT, A, B)
    with pytest.raises(DataError, match=r"shorten the responses"):
        judge.compare(MINE, PROMPT, long, B)  # a response is never cut: refused


# ----------------------------------------------------------------------------------------------
# persrm judge --batch: every bad line, a killed batch resumes, an unwritable --out is refused
# ----------------------------------------------------------------------------------------------


def test_judge_batch_reports_every_bad_line(env, capsys, tmp_path):
    mine = str(env["files"] / "mine.jsonl")
    batch = tmp_path / "pairs.jsonl"
    lines = [
        json.dumps({"id": "ok", "a": A, "b": B}),
        json.dumps({"id": "no-b", "a": A}),
        '{"id": "broken", "a": ',
        json.dumps({"id": "same", "a": A, "b": A}),
        json.dumps({"id": "num-prompt", "prompt": 42, "a": A, "b": B}),
        json.dumps({"id": "no-exemplars", "a": A, "b": B, "exemplars": []}),
        json.dumps({"id": "ok2", "a": B, "b": A}),
    ]
    batch.write_text("\n".join(lines) + "\n")
    out = tmp_path / "verdicts.jsonl"
    err = _fails(capsys, "judge", "--run", "j", "--exemplars", mine, "--batch", str(batch),
                 "--out", str(out))  # fmt: skip
    assert "5 lines cannot be judged (nothing was judged)" in err
    for where in ("line 2, field 'b': missing field 'b'", "line 3: ",
                  "line 4, field 'b': response A and response B are the same text",
                  "line 5, field 'prompt': the prompt is a int",
                  "line 6, field 'exemplars': 'exemplars' is an empty list"):  # fmt: skip
        assert where in err, where
    assert "line 1" not in err and "line 7" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]  # nothing written


def test_judge_batch_resumes_a_killed_run(env, capsys, tmp_path):
    from persrm_utils.use.persrm import batch_cache_path, read_batch

    mine = env["files"] / "mine.jsonl"
    batch = tmp_path / "pairs.jsonl"
    rows = [{"id": f"p{i}", "prompt": PROMPT, "a": A + f" ({i})", "b": B} for i in range(3)]
    batch.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out" / "verdicts.jsonl"
    # What a batch killed after its first two pairs leaves behind: their answers, in the cache
    # beside --out (each one written and fsynced as it came), and no --out yet.
    items = read_batch(batch, read_exemplars_file(mine))
    judge = PersRM.from_run("j")
    first_two = judge.compare_many(items[:2], cache=batch_cache_path(out))
    cache_lines = batch_cache_path(out).read_text().splitlines()
    assert len(cache_lines) == 4 and not out.exists()

    args = ["judge", "--run", "j", "--exemplars", str(mine), "--batch", str(batch),
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    said = capsys.readouterr().out
    assert (
        "3 pairs judged by persrm:j:sft (4 of 6 answers read back from an interrupted run)" in said
    )
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in got] == ["p0", "p1", "p2"]
    for line, res in zip(got[:2], first_two, strict=True):
        assert line == {"id": line["id"], **res.to_dict()}
    assert not batch_cache_path(out).exists()  # done: the cache is gone, --out holds it all
    assert sorted(p.name for p in out.parent.iterdir()) == ["verdicts.jsonl"]

    assert main(args) == 0  # a finished batch run again is judged again, from scratch
    assert "read back" not in capsys.readouterr().out
    assert [json.loads(x) for x in out.read_text().splitlines()] == got


def test_judge_batch_killed_for_real_resumes(env, capsys, tmp_path):
    # The CLI in a child process, killed (SIGKILL) once two answers are in its cache; the rerun
    # reads those back and judges only the rest. No timing is asserted: the poll only waits.
    import time

    from persrm_utils.use.persrm import batch_cache_path

    mine = str(env["files"] / "mine.jsonl")
    batch = tmp_path / "pairs.jsonl"
    rows = [{"id": f"k{i}", "a": A + f" ({i})", "b": B} for i in range(6)]
    batch.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "verdicts.jsonl"
    cache = batch_cache_path(out)
    args = ["judge", "--run", "j", "--exemplars", mine, "--batch", str(batch), "--out", str(out),
            "--batch-size", "1"]  # fmt: skip
    env_vars = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "persrm_utils.cli", *args], env=env_vars,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        waited = 0.0
        while proc.poll() is None and waited < 600:
            if cache.exists() and cache.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.02)
            waited += 0.02
        assert proc.poll() is None, "the batch ended before it could be killed"
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists()
    kept = cache.read_bytes().count(b"\n")  # whole lines; a line cut by the kill is redone
    assert 2 <= kept < 12

    assert main(args) == 0
    said = capsys.readouterr().out
    assert f"6 pairs judged by persrm:j:sft ({kept} of 12 answers read back" in said
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [r["id"] for r in rows]
    assert not cache.exists()


def _without_root_powers() -> list[str]:
    """A command prefix under which a read-only folder is read-only, even for root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: no folder can be made read-only to us")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable"]


def test_an_out_that_cannot_be_a_file_is_refused_before_any_work(env, capsys, tmp_path):
    mine = str(env["files"] / "mine.jsonl")
    batch = tmp_path / "pairs.jsonl"
    batch.write_text(json.dumps({"a": A, "b": B}) + "\n")
    judge_args = ["judge", "--run", "j", "--exemplars", mine, "--batch", str(batch)]
    # A folder where a file should be, and a file where a folder should be: said, in process.
    err = _fails(capsys, *judge_args, "--out", str(tmp_path))
    assert f"{tmp_path}: is a folder" in err
    err = _fails(capsys, *judge_args, "--out", str(batch / "sub" / "verdicts.jsonl"))
    assert f"cannot be created: {batch} is a file, not a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]  # no temporary file


def test_read_only_folders_are_refused_before_any_work(env, tmp_path):
    # A read-only folder, for real, in a child process (as root: without root's override).
    mine = str(env["files"] / "mine.jsonl")
    batch = tmp_path / "pairs.jsonl"
    batch.write_text(json.dumps({"a": A, "b": B}) + "\n")
    judge_args = ["judge", "--run", "j", "--exemplars", mine, "--batch", str(batch)]
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    env_vars = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    try:
        for args in ([*judge_args, "--out", str(ro / "verdicts.jsonl")],
                     ["export", "--run", "j", "--out", str(ro / "export")]):  # fmt: skip
            proc = subprocess.run(
                [*_without_root_powers(), sys.executable, "-m", "persrm_utils.cli", *args],
                capture_output=True, text=True, env=env_vars, timeout=600,
            )  # fmt: skip
            assert proc.returncode == 2, proc.stderr
            assert "Traceback" not in proc.stderr
            assert f"cannot be written: {ro} does not accept new files" in proc.stderr
            assert "nothing was done yet" in proc.stderr and "pairs judged" not in proc.stdout
            assert list(ro.iterdir()) == []  # no temporary file, no partial export
    finally:
        ro.chmod(0o755)
