"""A recipe probe keeps its verdicts, so two probes of the same seed can be paired by item.

Before, the probe log kept only summaries: `us99m96` (0.553) against `us99m48` (0.530) could only
be read side by side, two overlapping intervals, though both judged the very same 100 items.
These tests save real baseline verdicts the way :func:`run_probe` saves the judge's, and pair them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from persrm_utils.bench.probe import SWAP_PAIRS_FILE, VERDICTS_FILE, compare_probes, save_verdicts
from persrm_utils.data.user_swap import user_swap_pairs
from persrm_utils.errors import DataError
from persrm_utils.evaluate.baselines import stylometric_baseline, visible_cue_baseline
from persrm_utils.evaluate.metrics import predictions_frame, user_swap_summary
from persrm_utils.records import Exemplar

ROOT = Path(__file__).resolve().parents[2]
#: Six authors with habits a character n-gram or a cue count can pick up (or not).
HABITS = ("Shares rose 4.5 pct to 120 dlrs", '"We are pleased," he said', "Wow! Big news!",
          "The board met; it decided nothing", "Analysts, however, were cautious",
          "Officials declined comment on the talks")  # fmt: skip


def corpus(words: int = 12) -> list[Exemplar]:
    return [
        Exemplar(
            author_id=f"au{a}",
            text_id=f"au{a}/{t}",
            prompt=f"Opening {a}.{t}.",
            output=" ".join(" ".join(f"{habit} ({t}/{i})." for i in range(4)).split()[:words]),
            source="seed",
            meta={"split": "test"},
        )
        for a, habit in enumerate(HABITS)
        for t in range(5)
    ]


def probe_folder(folder: Path, seed: int = 0, words: int = 12) -> list:
    exemplars = corpus(words)
    by_id = {e.text_id: e for e in exemplars}
    swap = user_swap_pairs(exemplars, "test", k=1, seed=seed)
    frames = {
        "user_swap": [
            predictions_frame(stylometric_baseline(swap, by_id), swap, "char n-grams"),
            predictions_frame(visible_cue_baseline(swap, by_id), swap, "visible cues"),
        ]
    }
    folder.mkdir(parents=True)
    save_verdicts(folder, frames, swap)
    return swap


def test_two_judges_of_the_same_items_pair_to_the_difference_of_their_accuracies(tmp_path):
    swap = probe_folder(tmp_path / "p")
    saved = (tmp_path / "p" / VERDICTS_FILE).read_text().splitlines()
    assert saved[0].endswith(",set") and len(saved) == 1 + 2 * 2 * len(swap)  # 2 judges x orders
    diff = compare_probes(tmp_path / "p", tmp_path / "p", "char n-grams", "visible cues")
    import pandas as pd

    frame = pd.read_csv(tmp_path / "p" / VERDICTS_FILE)
    acc = {m: user_swap_summary(f, swap)["accuracy"] for m, f in frame.groupby("model")}
    assert diff["n_items"] == len(swap) // 2 == 30
    assert diff["accuracy_x"] == pytest.approx(acc["char n-grams"])
    assert diff["difference"] == pytest.approx(acc["char n-grams"] - acc["visible cues"])
    assert diff["ci_low"] <= diff["difference"] <= diff["ci_high"]
    same = compare_probes(tmp_path / "p", tmp_path / "p", "char n-grams", "char n-grams")
    assert (same["difference"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)


def test_probes_of_other_items_or_longer_texts_are_refused_not_paired(tmp_path):
    probe_folder(tmp_path / "p")
    probe_folder(tmp_path / "longer", words=16)  # same ids, same authors, longer texts
    with pytest.raises(DataError, match="no user-swap item in common"):
        compare_probes(tmp_path / "p", tmp_path / "longer", "char n-grams", "char n-grams")
    fewer = tmp_path / "fewer"  # ten of the thirty items left out
    fewer.mkdir()
    (fewer / VERDICTS_FILE).write_text((tmp_path / "p" / VERDICTS_FILE).read_text())
    kept = (tmp_path / "p" / SWAP_PAIRS_FILE).read_text().splitlines()[:40]
    (fewer / SWAP_PAIRS_FILE).write_text("\n".join(kept) + "\n")
    with pytest.raises(DataError, match=r"items \(40 of their 60 and 40 user-swap pairs in common"):
        compare_probes(tmp_path / "p", tmp_path / "fewer", "char n-grams", "char n-grams")
    probe_folder(tmp_path / "seed1", seed=1)
    with pytest.raises(DataError, match="user-swap item"):
        compare_probes(tmp_path / "p", tmp_path / "seed1", "char n-grams", "char n-grams")


def test_a_probe_without_verdicts_or_that_judge_says_what_to_do(tmp_path):
    (tmp_path / "old").mkdir()
    with pytest.raises(DataError) as err:
        compare_probes(tmp_path / "old", tmp_path / "old")
    assert VERDICTS_FILE in str(err.value) and "probe_recipes.py" in str(err.value)
    probe_folder(tmp_path / "p")
    (tmp_path / "p2").mkdir()
    (tmp_path / "p2" / VERDICTS_FILE).write_text((tmp_path / "p" / VERDICTS_FILE).read_text())
    with pytest.raises(DataError, match=SWAP_PAIRS_FILE.replace(".", r"\.")):
        compare_probes(tmp_path / "p", tmp_path / "p2", "char n-grams", "char n-grams")
    with pytest.raises(DataError, match="name one of: char n-grams, visible cues"):
        compare_probes(tmp_path / "p", tmp_path / "p")  # the default judge "SFT" is not there


def test_the_script_prints_the_paired_difference_and_exits_2_on_bad_input(tmp_path):
    probe_folder(tmp_path / "p")
    script = [sys.executable, str(ROOT / "scripts" / "compare_probes.py")]
    ok = subprocess.run([*script, str(tmp_path / "p"), str(tmp_path / "p"), "--model-x",
                         "char n-grams", "--model-y", "visible cues"],
                        capture_output=True, text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "'char n-grams' minus p 'visible cues', on the same 30 items:" in ok.stdout
    bad = subprocess.run([*script, str(tmp_path), str(tmp_path / "p")], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert bad.returncode == 2 and VERDICTS_FILE in bad.stderr


def test_a_whole_probe_on_the_tiny_model_reports_and_keeps_verdicts_that_pair(tmp_path):
    """The probe behind every row of RESULTS.md's recipe table, end to end on the tiny model:
    its user-swap items mixed into SFT (4 rows each), the figures it logs, and the verdicts it
    keeps (the judge's, at k and at k = 0, and the baselines')."""
    import pandas as pd

    from persrm_utils.bench.probe import ProbeRecipe, run_probe
    from persrm_utils.evaluate.likelihood import LIKELIHOOD_NAME

    recipe = ProbeRecipe(base="smoke", types=("style_random",),
                         test_types=("cross_author", "style_random"), think="none", epochs=1,
                         n_train_authors=4, n_test_authors=2, texts_per_author=8,
                         max_output_words=30, max_train_pairs=6, user_swap_train=2,
                         max_test_pairs=4, user_swap_test=3, gen_budget_s=0)  # fmt: skip
    result = run_probe(recipe, tmp_path / "probe")
    assert result["n_train_pairs"] == 6 + 2 * 2 and result["n_train_rows"] == 6 * 2 + 2 * 4
    assert result["train_types"] == {"style_random": 6, "user_swap": 4}
    assert result["n_test_pairs"] == 4 and result["sft"]["steps"] >= 1
    swap = result["personalization"]["user_swap"]
    assert swap["n_pairs"] == 3 and 0 <= swap["accuracy"] <= 1
    assert result["personalization"]["exemplar_effect"]["n_pairs"] == 4
    frame = pd.read_csv(tmp_path / "probe" / VERDICTS_FILE)
    counts = frame.groupby(["set", "model"]).size().to_dict()
    assert counts == {
        ("test", m): 8 for m in ("SFT", "SFT, k=0", "char n-grams", "visible cues")
    } | {("user_swap", m): 12 for m in ("SFT", "char n-grams", "visible cues", LIKELIHOOD_NAME)}
    pmi = result["personalization"]["user_swap_likelihood"]  # the base model, adapter disabled
    # timed (rounded to 0.1 s: on the tiny model it can round to 0.0, so only its presence counts)
    assert pmi["n_pairs"] == 3 and result["timings"]["likelihood_user_swap_s"] >= 0
    letters = frame[frame["model"] == LIKELIHOOD_NAME].groupby("pair_id")["letter"].nunique()
    assert (letters == 2).all()  # one score per text: the same text wins in both orders
    assert set(frame.loc[frame["model"] == "SFT, k=0", "k"]) == {0}
    diff = compare_probes(tmp_path / "probe", tmp_path / "probe", "SFT", "char n-grams")
    assert diff["n_items"] == 3 and diff["accuracy_x"] == pytest.approx(swap["accuracy"])


def test_a_teacher_filtered_probe_trains_only_on_items_the_base_model_reads(tmp_path):
    """The probe's ``user_swap_teacher`` lever: the training user-swap items are drawn from
    candidates and only those the untrained model's likelihood reads under both users are kept,
    whole (both users' versions), and the probe reports how many."""
    from persrm_utils.bench.probe import ProbeRecipe, run_probe

    recipe = ProbeRecipe(base="smoke", types=("style_random",), test_types=("style_random",),
                         think="none", epochs=1, n_train_authors=4, n_test_authors=2,
                         texts_per_author=8, max_output_words=30, max_train_pairs=4,
                         user_swap_train=3, user_swap_teacher=True, user_swap_candidates=12,
                         max_test_pairs=2, user_swap_test=2, gen_budget_s=0)  # fmt: skip
    result = run_probe(recipe, tmp_path / "probe")
    teacher = result["user_swap_teacher"]
    assert teacher["candidates"] == 12 and teacher["used"] == min(3, teacher["kept"])
    assert result["train_types"].get("user_swap", 0) == 2 * teacher["used"]
    assert result["timings"]["teacher_s"] > 0 and "-us3t-" in recipe.slug()
    # cached where notebook 03 caches it, so a probe started again skips the teacher's pass
    assert teacher["cached"] is False
    assert (tmp_path / "probe" / "sft" / "user_swap_items.json").is_file()
