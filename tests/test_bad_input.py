"""Bad input met as a new user meets it: each gets a message naming the file or field and the fix,
and nothing already written is lost."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from persrm_utils.cli import main
from persrm_utils.data.corpus import load_c50, load_own_texts, save_own_texts
from persrm_utils.data.exemplars import assign_splits, corpus_record, load_corpus, read_exemplars
from persrm_utils.errors import ConfigError, DataError, TrainingError
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.generation.requests import GenRequest, OfflineBackend
from persrm_utils.judge.format import parse_verdict
from persrm_utils.profiles import get_profile, parse_overrides
from persrm_utils.records import Exemplar, TextRecord, write_jsonl
from persrm_utils.run.folders import RunFolder
from persrm_utils.train.sft import ADAPTER, train_sft

ARTICLE = "The market opened higher on Monday. Shares rose 2.5 percent by noon. Traders smiled."


def _fake_c50(root: Path, authors: int = 2, texts: int = 2) -> Path:
    for split in ("C50train", "C50test"):
        for a in range(authors):
            folder = root / split / f"Author{a}"
            folder.mkdir(parents=True)
            for t in range(texts):
                (folder / f"{a}{t}{split[-4:]}newsML.txt").write_text(f"{ARTICLE} Note {a}{t}.")
    return root


# ----------------------------------------------------------------------------------------------
# Own texts
# ----------------------------------------------------------------------------------------------


def _own_file(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


MINE = [
    "I run in the dark months. The first week was miserable.",
    "Our kitchen table is where everything happens. I like it that way.",
    "The train was late again, so I read. Forty minutes is long.",
]


def test_own_texts_with_a_repeated_text_id_name_the_line(tmp_path):
    rows = [{"author_id": "me", "text_id": f"me/{i}", "text": t} for i, t in enumerate(MINE)]
    rows[2]["text_id"] = "me/0"
    path = _own_file(tmp_path / "own.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_own_texts(path)
    msg = str(err.value)
    assert f"{path}, line 3, field 'text_id'" in msg
    assert "text_id 'me/0' is already used on line 1" in msg and "Fix:" in msg


def test_own_texts_with_the_same_text_under_two_ids_name_the_line(tmp_path):
    rows = [{"author_id": "me", "text_id": f"me/{i}", "text": t} for i, t in enumerate(MINE)]
    rows.append({"author_id": "me", "text_id": "me/9", "text": "  " + MINE[1].replace(" ", "  ")})
    path = _own_file(tmp_path / "own.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_own_texts(path)
    msg = str(err.value)
    assert f"{path}, line 4, field 'text'" in msg and "the same as line 2" in msg


def test_own_text_reusing_a_corpus_id_or_text_is_refused_naming_the_line(tmp_path):
    profile = get_profile("smoke")
    corpus = load_corpus(profile)
    taken = corpus[0]
    path = _own_file(
        tmp_path / "own.jsonl",
        [
            {"author_id": "me", "text_id": "me/1", "text": MINE[0]},
            {"author_id": "me", "text_id": taken.text_id, "text": MINE[1]},
        ],
    )
    with pytest.raises(DataError) as err:
        assign_splits(corpus, profile, own=load_own_texts(path))
    msg = str(err.value)
    assert "own.jsonl, line 2, field 'text_id'" in msg
    assert f"your text_id '{taken.text_id}' is also the id of a corpus text" in msg

    copied = f"{taken.prompt} {taken.output}"
    path = _own_file(
        tmp_path / "own2.jsonl",
        [
            {"author_id": "me", "text_id": "me/1", "text": MINE[0]},
            {"author_id": "me", "text_id": "me/2", "text": copied},
        ],
    )
    with pytest.raises(DataError) as err:
        assign_splits(corpus, profile, own=load_own_texts(path))
    msg = str(err.value)
    assert "own2.jsonl, line 2, field 'text'" in msg
    assert f"is the corpus text '{taken.text_id}'" in msg


def test_an_empty_own_texts_file_says_what_to_do(tmp_path):
    path = tmp_path / "own_texts.jsonl"
    path.write_text("")
    with pytest.raises(DataError) as err:
        load_own_texts(path)
    assert f"{path}: holds no texts" in str(err.value) and "save_own_texts" in str(err.value)


def test_saved_own_texts_still_load(tmp_path):
    path = save_own_texts(tmp_path / "own.jsonl", "me", MINE)
    own = load_own_texts(path)
    assert [e.meta["line"] for e in own] == [1, 2, 3]
    assert [TextRecord(author_id="me", text_id=e.text_id, text="x").text_id for e in own] == [
        "me/001", "me/002", "me/003"]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The corpus path
# ----------------------------------------------------------------------------------------------


def test_a_wrong_explicit_c50_dir_fails_instead_of_falling_back(tmp_path, monkeypatch):
    wrong = tmp_path / "not-the-corpus"
    wrong.mkdir()
    monkeypatch.setenv("PERSRM_C50_DIR", str(wrong))
    with pytest.raises(DataError) as err:
        load_corpus(get_profile("cpu"))
    msg = str(err.value)
    assert f"{wrong}: PERSRM_C50_DIR points here, but this folder does not hold C50train/" in msg
    # pointing at C50train/ itself gets the specific layout hint
    good = _fake_c50(tmp_path / "c50")
    monkeypatch.setenv("PERSRM_C50_DIR", str(good / "C50train"))
    with pytest.raises(DataError, match="this looks like C50train/ or C50test/ itself"):
        load_corpus(get_profile("cpu"))


def test_the_manifest_records_the_corpus_path_and_hash(tmp_path, monkeypatch, runs_root):
    root = _fake_c50(tmp_path / "c50")
    monkeypatch.setenv("PERSRM_C50_DIR", str(root))
    profile = get_profile("cpu")
    record = corpus_record(profile)
    assert record["corpus"] == "c50" and record["path"] == str(root.resolve())
    run = RunFolder.create("r", "cpu")
    run.start_stage("00_setup")
    run.file("environment.json").write_text("{}")
    run.finish_stage("00_setup", ["environment.json"], inputs={"corpus": record})
    saved = RunFolder.open(run.path).manifest.stages["00_setup"].inputs["corpus"]
    assert saved == record and len(saved["sha256"]) == 64
    # the hash follows the content
    (root / "C50test" / "Author1" / "10testnewsML.txt").write_text(f"{ARTICLE} Changed.")
    assert corpus_record(profile)["sha256"] != record["sha256"]
    seed = corpus_record(get_profile("smoke"))
    assert seed["corpus"] == "seed" and seed["path"].endswith("authors.jsonl")


def test_a_folder_named_like_an_article_is_named(tmp_path):
    root = _fake_c50(tmp_path / "c50")
    (root / "C50train" / "Author0" / "99newsML.txt").mkdir()
    with pytest.raises(DataError) as err:
        load_c50(root)
    assert "99newsML.txt: is a folder, but every *.txt" in str(err.value)


# ----------------------------------------------------------------------------------------------
# Profile values and training that diverges
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["sft_learning_rate=Infinity", "sft_learning_rate=nan",
                                 "grpo_beta=Infinity", "lora_dropout=NaN"])  # fmt: skip
def test_non_finite_profile_values_are_refused(raw):
    field = raw.split("=")[0]
    with pytest.raises(ConfigError) as err:
        get_profile("smoke", **parse_overrides([raw]))
    assert f"field '{field}'" in str(err.value) and "finite number" in str(err.value)


def _rows(n: int = 4) -> list[dict]:
    return [
        {"messages": [
            {"role": "system", "content": "You judge."},
            {"role": "user", "content": f"Pair {i}: which response, A or B?"},
            {"role": "assistant", "content": "<think> short </think>\n<answer>[[A]]</answer>"},
        ]}
        for i in range(n)
    ]  # fmt: skip


def test_a_nan_gradient_fails_training_and_keeps_the_earlier_adapter(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "sft"
    earlier = out / ADAPTER / "adapter_config.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"from": "an earlier, healthy run"}')
    profile = get_profile("smoke", sft_max_steps=3, sft_learning_rate=1e30)
    with pytest.raises(TrainingError) as err:
        train_sft(profile, _rows(), out, resume=False)
    msg = str(err.value)
    # logging_nan_inf_filter=False: the NaN loss itself is logged (and caught) at that step
    assert re.search(r"training diverged: step 3 logged (loss|grad_norm) = nan", msg), msg
    assert "learning rate too high" in msg and "lower sft_learning_rate" in msg
    assert earlier.read_text() == '{"from": "an earlier, healthy run"}'
    assert sorted(p.name for p in (out / ADAPTER).iterdir()) == ["adapter_config.json"]


# ----------------------------------------------------------------------------------------------
# The runner, run folders, caches, exemplars files, the verdict parser
# ----------------------------------------------------------------------------------------------


def test_run_without_any_notebook_fails(tmp_path, monkeypatch, runs_root, capsys):
    home = tmp_path / "elsewhere"
    home.mkdir()
    monkeypatch.setenv("PERSRM_HOME", str(home))
    assert main(["run", "--profile", "smoke", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"No notebook of the series is in {home / 'notebooks'}" in err
    assert "PERSRM_HOME" in err and not runs_root.exists()


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write in (as root, chmod does not stop writes: use sysfs)."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    folder = Path("/sys/kernel")
    if not folder.is_dir() or (os.access(folder, os.W_OK) and _can_create(folder)):
        pytest.skip("no read-only folder to test with on this machine")
    return folder


def _can_create(folder: Path) -> bool:
    try:
        (folder / ".persrm-probe").mkdir()
    except OSError:
        return False
    (folder / ".persrm-probe").rmdir()
    return True


def test_a_read_only_run_folder_is_named_and_left_intact(tmp_path, runs_root):
    run = RunFolder.create("r", "smoke")
    run.start_stage("00_setup")
    before = (run.path / "manifest.json").read_text()
    ro = _unwritable(tmp_path)
    with pytest.raises(ConfigError) as err:
        RunFolder.create("r", "smoke", root=ro)
    msg = str(err.value)
    assert f"Cannot write in {ro / 'r'}" in msg and "PERSRM_RUNS_DIR" in msg
    # the same run folder made read-only after it was written: saving names it, changes nothing
    run.path = ro
    with pytest.raises(ConfigError, match=re.escape(f"Cannot write in {ro}")):
        run.finish_stage("00_setup")
    with pytest.raises(ConfigError, match="Cannot write in"):
        run.file("sub/x.json")
    assert (runs_root / "r" / "manifest.json").read_text() == before


def test_a_folder_as_cache_path_is_named(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    with pytest.raises(DataError) as err:
        CachedGenerator(OfflineBackend(), folder)
    assert f"{folder}: is a folder, but the generation cache is one JSONL file" in str(err.value)
    gen = CachedGenerator(OfflineBackend(), tmp_path / "later.jsonl")
    (tmp_path / "later.jsonl").mkdir()  # becomes a folder after the cache was made
    req = GenRequest([{"role": "user", "content": "hello there"}], 4)
    with pytest.raises(DataError, match=r"later\.jsonl: is a folder"):
        gen.generate([req], progress=False)


def test_an_exemplars_line_without_meta_split_is_named(tmp_path):
    good = Exemplar(author_id="a", text_id="a/1", prompt="P.", output="O.", source="seed",
                    meta={"split": "train"})  # fmt: skip
    bad = good.model_copy(update={"text_id": "a/2", "meta": {}})
    path = write_jsonl(tmp_path / "exemplars.jsonl", [good, bad])
    with pytest.raises(DataError) as err:
        read_exemplars(path)
    msg = str(err.value)
    assert f"{path}, line 2, field 'meta.split'" in msg
    assert "exemplar 'a/2' has no meta.split" in msg
    assert "run 01_exemplars again" in msg
    assert read_exemplars(write_jsonl(tmp_path / "ok.jsonl", [good])) == [good]


@pytest.mark.parametrize("value", [None, b"<answer>[[A]]</answer>", 3])
def test_parse_verdict_of_no_text_says_what_to_pass(value):
    with pytest.raises(DataError) as err:
        parse_verdict(value)
    msg = str(err.value)
    assert "field 'text'" in msg and f"got {type(value).__name__}" in msg
    assert "finish_reason" in msg


def test_failing_cli_stage_is_marked_failed(tmp_path, monkeypatch, runs_root, capsys):
    """`persrm sft` that diverges exits 2 with the message and leaves the stage 'failed'."""
    from smoke_run import build_smoke_run

    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    run = build_smoke_run("nan")
    code = main(["sft", "--run", "nan", "--set", "sft_max_steps=3",
                 "--set", "sft_learning_rate=1e30"])  # fmt: skip
    assert code == 2
    assert "training diverged" in capsys.readouterr().err
    record = RunFolder.open(run.path).manifest.stages["03_sft_qlora"]
    assert record.status == "failed" and "training diverged" in record.error
    assert not (run.path / "sft" / ADAPTER).exists()
    shutil.rmtree(run.path)
