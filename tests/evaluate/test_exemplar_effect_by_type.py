"""The exemplar effect per negative type, read back from a run's eval/predictions.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persrm_utils.errors import DataError, MissingInputsError
from persrm_utils.evaluate.personalization import exemplar_effect_by_type
from persrm_utils.records import Pair, write_jsonl


def _write(run: Path, rows: list[dict]) -> None:
    """The run's predictions, and its unseen-author pairs (pairs/test.jsonl) they refer to."""
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    kinds = {r["pair_id"]: r["negative_type"] for r in rows}
    write_jsonl(run / "pairs" / "test.jsonl", [
        Pair(pair_id=pid, split="test", author_id="a1", text_id="t1", prompt="Opening",
             chosen="the real text", rejected="another text", negative_type=kind,
             exemplar_ids=["t0"], chosen_position="A", negative_source="real:t2",
             seen_author=False)
        for pid, kind in kinds.items()
    ])  # fmt: skip


def _verdicts(model: str, kind: str, pair: str, right: int) -> list[dict]:
    """Both orders of one pair; ``right`` of the two verdicts are correct."""
    out = []
    for swap, label in ((False, "A"), (True, "B")):
        correct = right == 2 or (right == 1 and not swap)
        letter = label if correct else ("B" if label == "A" else "A")
        row = {"model": model, "pair_id": pair, "negative_type": kind, "swap": swap}
        out.append(row | {"label": label, "letter": letter, "reason": "ok", "correct": correct})
    return out


def test_one_overall_figure_splits_into_the_types_that_pull_apart(tmp_path: Path) -> None:
    """Run cpu-long-c's overall effect, -0.183, was +0.059 on cross_author and -0.657 on
    style_mimic: the mimic is built from the exemplar's words. Per type, the two show."""
    rows = []
    for i in range(12):
        rows += _verdicts("SFT + GRPO", "cross_author", f"c{i}", 2)
        rows += _verdicts("SFT + GRPO, k=0", "cross_author", f"c{i}", 1)
        rows += _verdicts("SFT + GRPO", "style_mimic", f"m{i}", 0)
        rows += _verdicts("SFT + GRPO, k=0", "style_mimic", f"m{i}", 2)
    rows += _verdicts("SFT", "cross_author", "c0", 0)  # another model: ignored
    _write(tmp_path, rows)
    table = exemplar_effect_by_type(tmp_path).set_index("negative_type")
    assert list(table.index) == ["cross_author", "style_mimic", "all"]
    assert table.loc["cross_author", "effect"] == pytest.approx(0.5)
    assert table.loc["cross_author", "ci_low"] == pytest.approx(0.5)  # every pair moved alike
    assert table.loc["style_mimic", "effect"] == pytest.approx(-1.0)
    assert table.loc["style_mimic", "accuracy_0"] == pytest.approx(1.0)
    assert table.loc["all", "n_pairs"] == 24
    assert table.loc["all", "effect"] == pytest.approx(-0.25)


def test_a_model_without_a_k0_ablation_is_named_with_those_that_have_one(tmp_path: Path) -> None:
    _write(tmp_path, _verdicts("SFT", "cross_author", "c0", 2)
           + _verdicts("SFT + GRPO, k=0", "cross_author", "c0", 2))  # fmt: skip
    with pytest.raises(DataError, match=r"no verdicts of 'SFT, k=0'.*found: SFT \+ GRPO\)"):
        exemplar_effect_by_type(tmp_path, "SFT")
    with pytest.raises(MissingInputsError, match="run notebook 05"):
        exemplar_effect_by_type(tmp_path / "elsewhere")
