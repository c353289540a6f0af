"""The length-and-k grid of the personal signal: one row per cell, intervals that hold the point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from persrm_utils.evaluate.signal import signal_grid, signal_table
from persrm_utils.profiles import get_profile

ROOT = Path(__file__).resolve().parents[2]


def test_each_cell_cuts_texts_and_exemplars_to_its_length_and_shows_k_exemplars():
    profile = get_profile("smoke")
    rows = signal_grid(profile, lengths=[12, 40], ks=[1, 2], items=6)
    assert [(r["words"], r["k"]) for r in rows] == [(12, 1), (12, 2), (40, 1), (40, 2)]
    for r in rows:
        assert r["n_items"] == 6
        for judge in ("char n-grams", "visible cues"):
            s = r[judge]
            assert 0 <= s["ci_low"] <= s["accuracy"] <= s["ci_high"] <= 1
            assert 0 <= s["both_right"] <= 1
    assert signal_grid(profile, [12], [1], 6) == rows[:1]  # seeded: the same items every time
    table = signal_table(rows)
    assert list(table["model"].unique()) == ["char n-grams, k=1", "visible cues, k=1",
                                             "char n-grams, k=2"]  # fmt: skip
    row = table[(table["model"] == "char n-grams, k=2") & (table["words"] == 40)].iloc[0]
    assert row["accuracy"] == rows[3]["char n-grams"]["accuracy"] and row["n_pairs"] == 6


def test_the_script_prints_one_line_per_cell():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "signal_by_length.py"), "--profile", "smoke",
         "--words", "20", "--k", "1", "2", "--items", "4"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("words   20  k 1  items    4  char n-grams")


def test_a_language_model_adds_its_likelihood_column_on_the_same_items():
    from persrm_utils.evaluate.likelihood import LIKELIHOOD_NAME
    from persrm_utils.models.loader import load_model

    profile = get_profile("smoke")
    loaded = load_model(profile)
    rows = signal_grid(profile, [20], [1], 4, lm=(loaded.model, loaded.tokenizer))
    (row,) = rows
    s = row[LIKELIHOOD_NAME]
    assert 0 <= s["ci_low"] <= s["accuracy"] <= s["ci_high"] <= 1
    assert row["char n-grams"] == signal_grid(profile, [20], [1], 4)[0]["char n-grams"]
    assert f"{LIKELIHOOD_NAME}, k=1" in set(signal_table(rows)["model"])
