"""One source for measured figures: the generated blocks agree with the records, and a figure
edited by hand (or a record changed without regenerating) makes the check fail."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from persrm_utils.paths import project_root
from persrm_utils.run import figures
from persrm_utils.run.folders import RunFolder


def test_committed_figures_agree_with_the_records():
    assert figures.sync(check=True) == []


@pytest.fixture
def copy_root(tmp_path: Path) -> Path:
    root = project_root()
    for part in ("notebooks", "docs"):
        shutil.copytree(root / part, tmp_path / part)
    shutil.copy(root / "README.md", tmp_path / "README.md")
    assert figures.sync(tmp_path, check=True) == []
    return tmp_path


def test_a_figure_edited_by_hand_fails_the_check(copy_root: Path):
    guide = copy_root / "docs" / "teaching.md"
    text = guide.read_text()
    start, end = text.index(figures.BEGIN), text.index(figures.END)
    block = text[start:end]
    figure = re.search(r"\d+(\.\d+)? (s|min)\b", block)
    assert figure, "the teacher's guide has no measured figure to edit"
    edited = text[:start] + block.replace(figure.group(0), "999 min", 1) + text[end:]
    assert edited != text
    guide.write_text(edited)
    assert figures.sync(copy_root, check=True) == [
        "teaching.md: the measured figures differ from the records"
    ]
    assert figures.sync(copy_root) == []  # regenerating repairs it
    assert guide.read_text() == text


def test_a_changed_record_fails_the_check_until_regenerated(copy_root: Path):
    file = copy_root / "docs" / "results" / "cpu" / figures.RECORD
    record = json.loads(file.read_text())
    record["stages"]["00_setup"]["seconds"] = 99.0
    file.write_text(json.dumps(record))
    problems = figures.sync(copy_root, check=True)
    assert "00_setup.ipynb: the measured figures differ from the records" in problems
    assert "README.md: the measured figures differ from the records" in problems
    figures.sync(copy_root)
    assert "99 s" in (copy_root / "docs" / "teaching.md").read_text()
    assert figures.sync(copy_root, check=True) == []


def test_a_missing_block_is_reported(copy_root: Path):
    readme = copy_root / "README.md"
    readme.write_text(readme.read_text().replace(figures.END, ""))
    assert any("README.md must hold exactly one" in p for p in figures.sync(copy_root))


def test_unmeasured_profiles_say_so():
    block = figures.notebook_block("04_grpo_unsloth", {})
    assert block.count(figures.NOT_MEASURED) == len(figures.PROFILES)
    assert "24gb" in figures.readme_block({}) and "not yet measured" in figures.readme_block({})


def test_fmt_seconds():
    assert figures.fmt_seconds(7.2) == "7 s"
    assert figures.fmt_seconds(928.4) == "15.5 min"
    assert figures.fmt_seconds(6182.5) == "1 h 43 min"
    assert figures.fmt_seconds(None) == figures.NOT_MEASURED


def test_record_and_reference_from_a_run(tmp_path: Path, runs_root: Path):
    run = RunFolder.create("ref-1", "smoke", root=runs_root)
    run.start_stage("00_setup")
    env = run.file("environment.json")
    env.write_text("{}")
    run.finish_stage("00_setup", [env])
    nb_dir = run.path / "notebooks"
    (nb_dir / "solutions").mkdir(parents=True)
    executed = {
        "cells": [],
        "metadata": {"papermill": {"duration": 3.25}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    temp = f"{tempfile.gettempdir()}/tmp7ibbit60/replies.csv"  # 01's example CSV, a random name
    elsewhere = "/home/someone/clone/runs/ref-1/manifest.json"  # made in a clone, copied here
    source = "/home/someone/clone/notebooks/00_setup.ipynb"  # papermill's input_path there
    where = (
        f', "where": "{run.path}/environment.json", "csv": "{temp}", "m": "{elsewhere}", '
        f'"input_path": "{source}", "url": "https://host.org/a/runs/ref-1/notebooks/x.ipynb"}}}}'
    )
    text = json.dumps(executed).replace("}}", where, 1)
    (nb_dir / "00_setup.ipynb").write_text(text)
    (nb_dir / "solutions" / "00_setup_solutions.ipynb").write_text(json.dumps(executed))
    record = figures.record_from_run(run.path, {"00_setup": 0.5}, 0.7)
    assert record["profile"] == "smoke" and record["solutions_seconds"] == 3.2
    assert record["stages"]["00_setup"]["peak_ram_gb"] == 0.5
    assert record["stages"]["00_setup"]["seconds"] >= 0
    written = figures.publish_reference(run.path, root=tmp_path)
    assert len(written) == 2
    published = (tmp_path / "docs" / "reference" / "smoke" / "00_setup.ipynb").read_text()
    assert str(run.path) not in published and "runs/ref-1/environment.json" in published
    assert "tmp7ibbit60" not in published and "<temporary folder>/replies.csv" in published
    assert "/home/someone" not in published and '"m": "runs/ref-1/manifest.json"' in published
    assert '"input_path": "notebooks/00_setup.ipynb"' in published
    assert '"url": "https://host.org/a/runs/ref-1/notebooks/x.ipynb"' in published  # links kept


# ----------------------------------------------------------------------------------------------
# Counts and results from results.json: header tables, "what the measured runs found", install
# ----------------------------------------------------------------------------------------------


def _cell_sources(root: Path, notebook: str) -> str:
    import nbformat

    nb = nbformat.read(root / "notebooks" / notebook, as_version=4)
    return "\n".join(c.source for c in nb.cells)


def test_header_counts_are_the_cpu_runs():
    """The figures the review found typed by hand (01's author counts, 03's steps and traces,
    05's pair counts) come from the cpu run's record, and the stale hand-typed ones are gone."""
    root = project_root()
    result = figures.load_results(root)["cpu"]
    a = result["data"]["authors"]
    expected = {
        "01_exemplars.ipynb": f"{a['train']} train, {a['val']} val, {a['test']} test authors",
        "03_sft_qlora.ipynb": f"{result['sft']['steps']} steps on {result['sft']['traces']} traces",
        "05_evaluation.ipynb": f"{result['eval']['unseen_pairs']} unseen + "
        f"{result['eval']['seen_pairs']} seen pairs",
    }
    for notebook, text in expected.items():
        assert text in _cell_sources(root, notebook), notebook
    assert (a["val"], a["test"]) == (2, 13)  # the cpu profile's 12 unseen authors + "me"
    assert "(12 from the corpus, plus your own texts from section 3)" in _cell_sources(
        root, "01_exemplars.ipynb"
    )
    for stale in ("276 planned, 211 kept", "28 (1.5 epochs of 148 traces)", "unseen (111)"):
        assert not any(stale in _cell_sources(root, s.notebook) for s in figures.STAGES)


def _page_accuracy(page: str, model: str, column: int) -> str:
    """A cell of the generated results page's tables (``| model | ... |``)."""
    row = next(line for line in page.splitlines() if line.startswith(f"| {model} "))
    return row.split("|")[column + 1].strip()


def test_the_results_record_agrees_with_the_runs_generated_page():
    """results.json came from a run; the page that run wrote itself (copied beside it) is the
    check."""
    root = project_root()
    result = figures.load_results(root)["cpu"]
    page = (root / "docs" / "results" / "cpu" / figures.run_page_name(result)).read_text()
    assert figures.run_page_name(result) == f"run-{result['run']}.md"
    overall_part, type_part = page.split("## By negative type")
    for judge, entry in result["eval"]["overall"].items():
        assert _page_accuracy(overall_part, judge, 1) == figures._acc(entry), judge
    type_table = type_part.split("## Seen vs")[0]
    header = next(line for line in type_table.splitlines() if line.startswith("| model"))
    columns = [c.strip() for c in header.split("|")[2:-1]]
    for judge, types in result["eval"]["by_type"].items():
        for t, entry in types.items():
            cell = _page_accuracy(type_table, judge, columns.index(t) + 1)
            assert cell.startswith(f"{entry['accuracy']:.3f}") and f"n={entry['n']}" in cell
    sft, grpo = result["sft"], result["grpo"]
    assert f"{sft['steps']} steps on {sft['traces']} traces" in page
    varied = grpo.get("preflight_varied", grpo["preflight_kept"])  # older records: kept = varied
    assert f"{varied} of {grpo['preflight_checked']} training prompts" in page


def test_found_blocks_say_not_yet_measured_without_a_record():
    for stage in figures.FOUND_STAGES:
        block = figures.found_block(stage, {})
        assert block.count(figures.NOT_MEASURED) == len(figures.PROFILES)
    table = figures.profile_table("03_sft_qlora", {})
    assert table.count(figures.NOT_MEASURED) == len(figures.PROFILES)


def test_found_blocks_carry_the_k0_gap_grpo_change_and_bradley_terry():
    r = figures.load_results(project_root())["cpu"]
    ev = r["eval"]
    gap = ev["overall"]["SFT + GRPO"]["accuracy"] - ev["k0"]["accuracy"]
    change = ev["overall"]["SFT + GRPO"]["accuracy"] - ev["overall"]["SFT"]["accuracy"]
    results = {"cpu": r}
    assert f"the exemplar adds {gap:.3f}" in figures.found_block("05_evaluation", results)
    assert f"a change of {change:+.3f}" in figures.found_block("04_grpo_unsloth", results)
    bt, sft = ev["overall"]["Bradley-Terry RM"]["accuracy"], ev["overall"]["SFT"]["accuracy"]
    assert f"Bradley-Terry RM {bt:.3f} against the SFT judge {sft:.3f}" in figures.found_block(
        "05_evaluation", results
    )
    small = [t for t, e in ev["by_type"]["SFT"].items() if e["n"] < 10]
    block_03 = figures.found_block("03_sft_qlora", results)
    for t in small:
        accuracy = ev["by_type"]["SFT"][t]["accuracy"]
        assert f"{accuracy:.3f} (no interval: n < 10)" in block_03, t


def test_an_edited_result_fails_the_check(copy_root: Path):
    nb_path = copy_root / "notebooks" / "05_evaluation.ipynb"
    text = nb_path.read_text()
    bt = figures.load_results(copy_root)["cpu"]["eval"]["overall"]["Bradley-Terry RM"]
    shown = figures._acc(bt)
    assert shown in text
    nb_path.write_text(text.replace(shown, "0.999 [0.998, 1.000]", 1))
    assert figures.sync(copy_root, check=True) == [
        "05_evaluation.ipynb: the measured figures differ from the records"
    ]


def test_the_install_table_takes_the_series_time_from_the_smoke_record():
    root = project_root()
    records = figures.load_records(root)
    block = figures.install_block(figures.load_install(root), records)
    assert figures.fmt_seconds(figures.series_seconds(records["smoke"])) in block
    assert "101 s" not in (root / "README.md").read_text()
    assert figures.install_block(None, {}).count(figures.NOT_MEASURED) == 4
