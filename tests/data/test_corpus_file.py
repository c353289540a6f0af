"""Your own corpus (``corpus="file"``): JSONL, CSV and ``datasets`` sources, the drop report, the
errors, and the smoke series run end to end on a CSV file written here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from persrm_utils.data.corpus import load_seed
from persrm_utils.data.exemplars import collect, corpus_record, load_corpus, load_corpus_report
from persrm_utils.data.own_corpus import load_corpus_file
from persrm_utils.data.pairs import plan_pairs
from persrm_utils.errors import ConfigError, DataError
from persrm_utils.profiles import get_profile

GOOD = {
    "ana": ["Thanks for writing in. Your refund is on its way.",
            "We are sorry for the wait. A new parcel ships today.",
            "Your account is open again. Nothing else is needed."],
    "ben": ["Hi!! Great news: it's fixed. Cheers!",
            "Hey! Try turning it off and on. Works every time!",
            "Yo! New version is out. Grab it while it's hot!"],
    "cy": ["Dear customer, we acknowledge receipt. A reply follows.",
           "Dear customer, your claim is registered. Expect a letter.",
           "Dear customer, the payment was received. Thank you."],
}  # fmt: skip


def _good_rows() -> list[dict]:
    return [
        {"writer": a, "body": t, "text_id": f"{a}-{i}"}
        for a, texts in GOOD.items()
        for i, t in enumerate(texts, 1)
    ]


def _bad_rows() -> list[dict]:
    return [
        {"writer": "", "body": "No author here. It cannot count.", "text_id": "x-1"},
        {"writer": "dee", "body": 42, "text_id": "x-2"},  # not text
        {"writer": "dee", "body": "   ", "text_id": "x-3"},  # empty
        # the same text as ana-1, spaced differently
        {
            "writer": "ana",
            "body": "  Thanks for writing in.  Your refund is on its way. ",
            "text_id": "x-4",
        },
        {"writer": "ben", "body": "Another one. Under a used id.", "text_id": "ana-2"},
        {"writer": "cy", "body": "One sentence only", "text_id": "x-6"},
        {"writer": "eve", "body": "Only one text by eve. So eve cannot be used.", "text_id": "x-7"},
    ]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_the_drop_report_counts_every_reason_with_an_example(tmp_path):
    path = _jsonl(tmp_path / "replies.jsonl", _good_rows() + _bad_rows())
    kept, report = load_corpus_file(path, author_field="writer", text_field="body")
    assert sorted({e.author_id for e in kept}) == ["ana", "ben", "cy"]
    assert len(kept) == 9 and {e.source for e in kept} == {"file"}
    assert report.rows == 16 and report.kept_texts == 9 and report.kept_authors == 3
    assert dict(report.dropped) == {"empty_author": 1, "empty_text": 2, "duplicate_text": 1,
                                    "duplicate_id": 1, "too_short": 1, "few_texts": 1}  # fmt: skip
    assert report.authors_dropped == 1
    text = str(report)
    assert f"{path}: 16 rows read, 9 texts by 3 authors kept, 7 dropped" in text
    assert "2 text empty, missing or not text, e.g. line 11: {writer='dee', body=42" in text
    assert "1 same text as an earlier row, e.g. line 13" in text
    assert "1 text_id already used by an earlier row, e.g. line 14" in text
    assert "1 too short to split" in text and "e.g. line 15" in text
    assert "1 author has too few usable texts (1 authors), e.g. line 16 (author 'eve'" in text
    first = kept[0]
    assert (first.text_id, first.prompt) == ("ana-1", "Thanks for writing in.")


def test_csv_and_datasets_sources_read_the_same_corpus(tmp_path):
    import datasets

    rows = _good_rows() + _bad_rows()
    jsonl = _jsonl(tmp_path / "c.jsonl", rows)
    as_csv = _csv(tmp_path / "c.csv", [r | {"body": str(r["body"])} for r in rows])
    text_rows = [r | {"body": str(r["body"])} for r in rows]  # a column has one type
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(text_rows).save_to_disk(str(saved))
    parquet = tmp_path / "c.parquet"
    datasets.Dataset.from_list(text_rows).to_parquet(str(parquet))

    def key(path):
        kept, report = load_corpus_file(path, "writer", "body")
        return [(e.author_id, e.text_id, e.prompt, e.output) for e in kept], report

    reference, rep = key(jsonl)
    for path in (as_csv, saved, parquet):
        got, report = key(path)
        assert got == reference, path
        # "42" is text in a CSV or a string column: one fewer empty, one more too-short text
        assert report.kept_texts == rep.kept_texts and report.rows == 16
        assert report.dropped["empty_text"] == 1 and report.dropped["too_short"] == 2
    _, report = key(saved)
    assert report.examples["too_short"].startswith("row 11: {writer='dee', body='42'")


def test_a_missing_field_names_the_fields_the_file_has(tmp_path):
    path = _csv(tmp_path / "c.csv", _good_rows())
    with pytest.raises(DataError) as err:
        load_corpus_file(path, author_field="author", text_field="body")
    msg = str(err.value)
    assert f"{path}, field 'author': has no field 'author'" in msg
    assert "(its fields: body, text_id, writer)" in msg
    assert "--set author_field=<field>" in msg
    with pytest.raises(DataError, match="corpus file not found"):
        load_corpus_file(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"cannot read a corpus from a '\.xlsx' file"):
        load_corpus_file(_csv(tmp_path / "c.xlsx", _good_rows()))
    (tmp_path / "empty.csv").write_text("writer,body\n")
    with pytest.raises(DataError, match="holds no rows"):
        load_corpus_file(tmp_path / "empty.csv", "writer", "body")
    (tmp_path / "not-a-dataset").mkdir()
    with pytest.raises(DataError, match="could not be read as a datasets dataset"):
        load_corpus_file(tmp_path / "not-a-dataset", "writer", "body")


def test_a_saved_dataset_dict_keeps_every_row_with_ids_unique_across_splits(tmp_path):
    """Row numbers restart in each split: the generated ids must not, or half the rows would be
    dropped as 'duplicate_id' although no row repeats an id."""
    import datasets

    rows = [{"writer": r["writer"], "body": r["body"]} for r in _good_rows()]
    train, test = rows[::2], rows[1::2]  # 5 and 4 rows, texts all different
    saved = tmp_path / "replies"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(train), "test": datasets.Dataset.from_list(test)}
    ).save_to_disk(str(saved))
    kept, report = load_corpus_file(saved, "writer", "body")
    assert report.rows == 9 and report.kept_texts == 9 and report.n_dropped == 0
    assert "9 rows read, 9 texts by 3 authors kept, 0 dropped" in str(report)
    ids = [e.text_id for e in kept]
    assert len(set(ids)) == 9
    assert {"replies:test:1", "replies:train:1"} <= set(ids)
    assert {e.meta["row"] for e in kept} >= {"split 'test' row 1", "split 'train' row 1"}


def test_a_generated_id_that_an_earlier_row_already_took_is_not_a_duplicate_id(tmp_path):
    """A row without a text_id is not 'a text_id already used': it gets another id and is kept."""
    rows = [{"writer": r["writer"], "body": r["body"]} for r in _good_rows()]
    rows[0]["text_id"] = "c:2"  # the id the loader would give the row on line 2
    path = _jsonl(tmp_path / "c.jsonl", rows)
    kept, report = load_corpus_file(path, "writer", "body")
    assert report.n_dropped == 0 and report.kept_texts == 9
    ids = [e.text_id for e in kept]
    assert len(set(ids)) == 9 and "c:2" in ids
    # a text_id the file itself repeats is still a duplicate id
    rows[3]["text_id"] = "c:2"
    kept, report = load_corpus_file(_jsonl(path, rows), "writer", "body")
    assert dict(report.dropped) == {"duplicate_id": 1}
    assert report.examples["duplicate_id"].startswith("line 4 (text_id 'c:2' of line 1): {")


def _raw(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_csv_row_with_more_or_fewer_fields_than_the_header_is_an_error_naming_every_line(
    tmp_path,
):
    """An unquoted comma splits a text into two fields: csv would keep the part before it as the
    whole text. The load stops instead, naming each such line and the fix."""
    lines = ["writer,body"]
    lines += [f'{r["writer"]},"{r["body"]}"' for r in _good_rows()]
    lines[2] = "ana,We are sorry, truly. A new parcel ships today."  # line 3: 3 fields
    lines[5] = "ben"  # line 6: 1 field
    lines[8] = "cy,Dear customer, your claim is registered, expect a letter. Thanks."  # line 9
    path = _raw(tmp_path / "team.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        load_corpus_file(path, "writer", "body")
    msg = str(err.value)
    assert f"{path}, line 3: 3 rows have a different number of fields than the header (2)" in msg
    assert "line 3 has 3 fields, line 6 has 1, line 9 has 4" in msg
    assert "outside quotes is split there and would be cut short: put each text in double" in msg
    # quoted, the same texts load whole: nothing cut
    lines[2] = 'ana,"We are sorry, truly. A new parcel ships today."'
    lines[5] = 'ben,"Hey! Try turning it off and on. Works every time!"'
    lines[8] = 'cy,"Dear customer, your claim is registered, expect a letter. Thanks."'
    kept, report = load_corpus_file(_raw(path, "\n".join(lines) + "\n"), "writer", "body")
    assert report.n_dropped == 0 and report.kept_texts == 9
    ana = [f"{e.prompt} {e.output}" for e in kept if e.author_id == "ana"]
    assert "We are sorry, truly. A new parcel ships today." in ana


def test_a_tsv_row_with_a_stray_tab_is_named_too(tmp_path):
    path = _raw(tmp_path / "team.tsv", "writer\tbody\nana\tOne. Two.\tthree\n")
    with pytest.raises(DataError, match=r"line 2 has 3 fields.*a tab") as err:
        load_corpus_file(path, "writer", "body")
    assert f"{path}, line 2:" in str(err.value)


def test_numeric_author_ids_are_ids(tmp_path):
    """Employee numbers, user ids: a number is an author id (as text), not a missing author."""
    import datasets

    numbers = {"ana": 7, "ben": 8, "cy": 9}
    rows = [r | {"writer": numbers[r["writer"]]} for r in _good_rows()]
    kept, report = load_corpus_file(_jsonl(tmp_path / "c.jsonl", rows), "writer", "body")
    assert report.n_dropped == 0 and sorted({e.author_id for e in kept}) == ["7", "8", "9"]
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(saved))  # an int64 column
    kept2, report = load_corpus_file(saved, "writer", "body")
    assert report.n_dropped == 0
    assert [(e.author_id, e.text_id) for e in kept2] == [(e.author_id, e.text_id) for e in kept]
    # numeric text ids are ids too; true/false is neither an author nor an id
    rows = [r | {"text_id": i} for i, r in enumerate(rows, 100)]
    rows[0]["writer"] = True
    kept, report = load_corpus_file(_jsonl(tmp_path / "d.jsonl", rows), "writer", "body")
    assert dict(report.dropped) == {"empty_author": 1}
    assert {e.text_id for e in kept} == {str(i) for i in range(101, 109)}


def _file_profile(path: Path, **kw):
    return get_profile("smoke", corpus="file", corpus_path=str(path), author_field="writer",
                       text_field="body", **kw)  # fmt: skip


def test_too_few_usable_authors_stops_with_has_and_needs(tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", _good_rows() + _bad_rows())
    with pytest.raises(DataError) as err:
        load_corpus(_file_profile(path))
    msg = str(err.value)
    assert "the corpus has 3 usable authors, the profile needs 6 (4 train + 1 val + 1 test)" in msg
    assert "7 dropped" in msg and "lower n_train_authors" in msg


def test_a_file_corpus_feeds_splits_and_pairs(tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", _good_rows() + _bad_rows())
    profile = _file_profile(path, n_train_authors=1, n_val_authors=1, n_test_authors=1,
                            texts_per_author=3)  # fmt: skip
    corpus, report = load_corpus_report(profile)
    assert report.kept_authors == 3 and len(corpus) == 9
    exemplars = collect(profile)
    assert {e.meta["split"] for e in exemplars} == {"train", "val", "test", "seen_test"}
    planned = plan_pairs(exemplars, profile.max_exemplars, profile.seed)
    assert planned and all(p.anchor.text_id not in p.exemplar_ids for p in planned)
    record = corpus_record(profile, report=report)
    assert record["corpus"] == "file" and record["path"] == str(path.resolve())
    assert record["author_field"] == "writer" and record["report"]["dropped"]["few_texts"] == 1


def test_corpus_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="corpus='file' needs corpus_path"):
        get_profile("smoke", corpus="file")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    with pytest.raises(DataError, match="corpus_path points here, but this folder does not hold"):
        load_corpus(get_profile("cpu", corpus_path=str(wrong)))


def _seed_csv(path: Path) -> Path:
    """The six seed authors as a CSV with other column names, plus rows the loader must drop."""
    rows = [{"writer": e.author_id, "body": f"{e.prompt} {e.output}"} for e in load_seed()]
    rows += [
        {"writer": "", "body": "Nobody wrote this. It has no author."},
        {"writer": rows[0]["writer"], "body": rows[0]["body"]},
        {"writer": "solo", "body": "A single text. Its author cannot be used."},
        {"writer": "tiny", "body": "short"},
    ]
    return _csv(path, rows)


@pytest.mark.slow
def test_the_smoke_series_runs_on_a_csv_corpus(tmp_path, runs_root, monkeypatch):
    from persrm_utils.records import Exemplar, Pair, read_jsonl
    from persrm_utils.run.folders import RunFolder
    from persrm_utils.run.runner import run_series

    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    path = _seed_csv(tmp_path / "team.csv")
    overrides = {"corpus": "file", "corpus_path": str(path), "author_field": "writer",
                 "text_field": "body"}  # fmt: skip
    results = run_series("smoke", run_name="own", overrides=overrides, progress=False,
                         echo=lambda s: None)  # fmt: skip
    done = [r.stage for r in results if r.status == "done"]
    assert done == ["00_setup", "01_exemplars", "02_synthetic_pairs", "03_sft_qlora",
                    "04_grpo_unsloth", "05_evaluation", "06_personalized_generation"]  # fmt: skip
    run = RunFolder.open(runs_root / "own")
    corpus = run.manifest.stages["01_exemplars"].inputs["corpus"]
    assert corpus["corpus"] == "file" and corpus["path"] == str(path.resolve())
    assert corpus["report"]["dropped"] == {"empty_author": 1, "duplicate_text": 1,
                                           "too_short": 1, "few_texts": 1}  # fmt: skip
    exemplars = read_jsonl(run.path / "exemplars.jsonl", Exemplar)
    seed_authors = {e.author_id for e in load_seed()}
    assert {e.author_id for e in exemplars} == seed_authors | {"me"}
    assert all(e.source in ("file", "own") for e in exemplars)
    pairs = read_jsonl(run.path / "pairs" / "test.jsonl", Pair)
    assert pairs and (run.path / "grpo" / "adapter").is_dir()
    assert (run.path / "eval" / "metrics.json").is_file() and (run.path / "bon").is_dir()
