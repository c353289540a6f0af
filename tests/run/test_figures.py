"""One source for measured figures: the generated blocks agree with the records, and a figure
edited by hand (or a record changed without regenerating) makes the check fail."""

from __future__ import annotations

import json
import re
import shutil
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
    text = json.dumps(executed).replace("}}", f', "where": "{run.path}/environment.json"}}}}', 1)
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
