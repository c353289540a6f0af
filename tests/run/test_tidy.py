"""Worked outputs worth reading: the noise checker, the quiet kernels, and the published copies."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from persrm_utils.classroom.checks import Checked, _not_answered
from persrm_utils.paths import project_root
from persrm_utils.run.runner import HEADLESS_ENV, headless_env
from persrm_utils.run.tidy import untidy_outputs
from persrm_utils.setup.import_order import quiet_known_noise


def _notebook(tmp_path: Path, outputs: list[dict]) -> Path:
    cell = {"cell_type": "code", "source": "x", "metadata": {}, "outputs": outputs,
            "execution_count": 1}  # fmt: skip
    path = tmp_path / "03_sft_qlora.ipynb"
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))  # fmt: skip
    return path


def test_each_kind_of_noise_is_found_and_clean_output_passes(tmp_path):
    bar = {
        "output_type": "display_data",
        "metadata": {},
        "data": {"text/plain": "Loading weights:   0%|          | 0/26 [00:00<?, ?it/s]"},
    }
    raw = {
        "output_type": "stream",
        "name": "stdout",
        "text": ["{'loss': '6.235', 'grad_norm': '0.1223'}\n"],
    }
    bnb = {
        "output_type": "stream",
        "name": "stderr",
        "text": "Failed to load CPU gemm_4bit_forward from kernels-community: ...\n",
    }
    stray = {"output_type": "execute_result", "metadata": {}, "execution_count": 1,
             "data": {"text/plain": "False"}}  # fmt: skip
    found = untidy_outputs(_notebook(tmp_path, [bar, raw, bnb, stray]))
    assert [f.split(": ", 1)[1].split(" (")[0] for f in found] == [
        "a stalled progress bar", "a raw trainer log dictionary", "library noise",
        "a stray False as the cell's value"]  # fmt: skip
    assert all(f.startswith("03_sft_qlora.ipynb cell 0: ") for f in found)
    fine = {
        "output_type": "stream",
        "name": "stdout",
        "text": "step 3/17 · loss 6.235 · lr 0.0009\nOK: 4 of 4 right. False positives: 0\n",
    }
    assert untidy_outputs(_notebook(tmp_path, [fine])) == []


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_the_published_worked_outputs_are_tidy(profile):
    """The executed notebooks in docs/reference are what a learner reads before running
    anything; the smoke copies carried a stalled bar in every model-loading cell, raw trainer
    dicts, bitsandbytes' kernel note and a stray False under each unanswered exercise."""
    folder = project_root() / "docs" / "reference" / profile
    notebooks = sorted(folder.rglob("*.ipynb"))
    if not notebooks:
        pytest.skip(f"no worked outputs published for '{profile}' yet")
    assert [line for nb in notebooks for line in untidy_outputs(nb)] == []


def test_publishing_refuses_a_noisy_run(tmp_path, runs_root):
    from persrm_utils.errors import DataError
    from persrm_utils.run import figures
    from persrm_utils.run.folders import RunFolder

    run = RunFolder.create("noisy", "smoke", root=runs_root)
    (run.path / "notebooks").mkdir()
    raw = {"output_type": "stream", "name": "stdout", "text": "{'loss': '6.2'}\n"}
    _notebook(run.path / "notebooks", [raw])
    with pytest.raises(DataError, match=r"(?s)1 noisy output.*raw trainer log") as err:
        figures.publish_reference(run.path, root=tmp_path)
    assert "persrm run" in err.value.fix
    assert not (tmp_path / "docs" / "reference" / "smoke").exists()


def test_known_noise_is_dropped_and_other_warnings_still_show(caplog):
    quiet_known_noise()
    quiet_known_noise()  # idempotent: one filter per logger
    bnb = logging.getLogger("bitsandbytes.backends.cpu.ops")
    assert len(bnb.filters) == 1
    with caplog.at_level(logging.WARNING):
        bnb.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s.", "x")
        bnb.warning("Something else went wrong")
        logging.getLogger("transformers.trainer_utils").warning(
            "mtime may not be reliable on this filesystem, falling back to numerical ordering"
        )
    assert [r.getMessage() for r in caplog.records] == ["Something else went wrong"]


def test_headless_kernels_get_bars_off_and_the_environment_is_restored(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "0")
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    with headless_env():
        assert {k: os.environ[k] for k in HEADLESS_ENV} == HEADLESS_ENV
    assert os.environ["TQDM_DISABLE"] == "0" and "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ


def test_a_check_result_shows_nothing_under_its_cell(capsys):
    """An unanswered check returned False, which Jupyter showed as the value of every
    exercise cell of the executed notebooks."""
    from IPython.core.interactiveshell import InteractiveShell

    result = _not_answered("write the answer")
    assert isinstance(result, Checked) and not result
    assert capsys.readouterr().out == "Not answered yet: write the answer\n"
    formatter = InteractiveShell.instance().display_formatter
    assert formatter.format(result) == ({}, {})
    assert formatter.format(False)[0] == {"text/plain": "False"}  # what it showed before


def test_peft_imported_after_the_by_hand_package_says_nothing_known():
    """The cpu run's 03 solutions printed bitsandbytes' "Failed to load CPU gemm_4bit_forward"
    under the LoRA exercise: its check imports peft (and bitsandbytes) before any model loads,
    so no quieting call had run yet. Importing the by-hand package now silences it."""
    code = "import persrm_utils.by_hand, peft, bitsandbytes"
    said = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stderr
    assert "gemm_4bit_forward" not in said
