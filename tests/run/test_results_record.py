"""The results record is built from a run's files, not typed by hand.

A small synthetic run (the files the builder reads, written through the real RunFolder API, with
figures chosen so that counting and rounding show) stands in for a real one: every expected
value below is written out by hand from the files this test writes, so a builder that reads the
wrong file, column or split, or rounds differently, fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from persrm_utils.errors import DataError
from persrm_utils.run import figures
from persrm_utils.run.folders import RunFolder

STAGE_ORDER = (
    "00_setup",
    "01_exemplars",
    "02_synthetic_pairs",
    "03_sft_qlora",
    "04_grpo_unsloth",
    "05_evaluation",
    "06_personalized_generation",
)


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def _csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.strip() + "\n")
    return path


def _exemplars(p: Path) -> list[Path]:
    rows = []
    # 3 train authors (their 4th text held out as seen_test), 1 val, 2 test, 4 texts each; and a
    # learner's own 2 texts in test (which must not set texts_per_author)
    for author, split in (("a1", "train"), ("a2", "train"), ("a3", "train"), ("v1", "val")):
        for i in range(4):
            held = split == "train" and i == 3
            rows.append({"author_id": author, "meta": {"split": "seen_test" if held else split}})
    for author in ("t1", "t2"):
        rows += [{"author_id": author, "meta": {"split": "test"}} for _ in range(4)]
    rows += [{"author_id": "me", "meta": {"split": "test"}} for _ in range(2)]
    return [_jsonl(p / "exemplars.jsonl", rows)]


def _pairs(p: Path) -> list[Path]:
    counts = {"train": 5, "val": 3, "test": 11, "seen_test": 2}
    return [
        _jsonl(p / "pairs" / f"{s}.jsonl", [{"pair_id": f"{s}{i}"} for i in range(n)])
        for s, n in counts.items()
    ]


def _sft(p: Path) -> list[Path]:
    # 4 pairs in both orders and one in one order: 5 pairs, 9 traces (not traces // 2)
    traces = [{"pair_id": f"p{i}", "swap": s} for i in range(4) for s in (False, True)]
    traces.append({"pair_id": "p4", "swap": False})
    log = {
        "steps": 7,
        "seconds": 12.6,
        "resumed_from": None,
        "losses": [[1, 0.98765], [4, 0.5], [7, 0.02349]],
        "examples": 9,
    }
    before_after = {"before": {"n": 6, "accuracy": 0.5}, "after": {"n": 6, "accuracy": 0.8333333}}
    return [
        _jsonl(p / "sft" / "traces.jsonl", traces),
        _json(p / "sft" / "train_log.json", log),
        _json(p / "sft" / "eval_before_after.json", before_after),
    ]


def _grpo(p: Path) -> list[Path]:
    history = [{"reward": -0.3049}, {"reward": 0.7}, {"reward": 1.2451}, {"train_runtime": 40.0}]
    return [
        _json(
            p / "grpo" / "preflight.json", {"checked": 16, "varied": 3, "kept": 6, "groups": 16.0}
        ),
        _json(p / "grpo" / "train_log.json", {"steps": 3, "seconds": 40.4, "history": history}),
        _json(
            p / "grpo" / "val_reward.json",
            {"pairs": 3, "before (SFT)": 0.72619, "after (SFT + GRPO)": 0.77891},
        ),
    ]


OVERALL_CSV = """
model,n_pairs,accuracy,ci_low,ci_high,swap_consistency,parse_failure_rate,position_bias
random,11,0.4909090909,0.4263,0.5481,0.4704,0.0,0.5012
SFT,11,0.7391304347,0.6782608,0.7956521,0.6869565,0.0,
SFT + GRPO,11,0.7478260869,0.6913043,0.8086956,0.6869565,0.0,0.5086956
"""


def _eval(p: Path) -> list[Path]:
    by_type = """
model,negative_type,n_pairs,accuracy,ci_low,ci_high,swap_consistency,parse_failure_rate,position_bias
random,style_random,9,0.5,0.4,0.6,0.0,0.0,0.5
SFT,cross_author,2,0.25,0.0,0.5,0.0,0.0,0.5
SFT,style_random,9,0.8888888,0.7777,1.0,1.0,0.0,0.5
SFT + GRPO,style_random,11,0.9090909,0.8181818,1.0,1.0,0.0,0.5
"""
    by_k = """
model,k,n_pairs,accuracy,ci_low,ci_high,swap_consistency,parse_failure_rate,position_bias
SFT,1,5,0.6,0.2,1.0,1.0,0.0,0.5
SFT + GRPO,0,11,0.7217391,0.6652173,0.7782608,0.5,0.0,0.5
SFT + GRPO,1,5,0.8,0.4,1.0,1.0,0.0,0.5
"""
    by_seen = """
model,seen,n_pairs,accuracy,ci_low,ci_high,swap_consistency,parse_failure_rate,position_bias
SFT,seen,4,0.75,0.5,1.0,1.0,0.0,0.5
SFT,unseen,11,0.7391304347,0.6782608,0.7956521,0.6869565,0.0,
"""
    personalization = {
        "user_swap_items": 12,
        "user_swap_splits": ["test"],
        "unseen_pairs": 11,
        "final": "SFT + GRPO",
        "seconds": {"SFT + GRPO, user-swap": 41.23},
        "models": {
            "SFT + GRPO": {
                "exemplar_effect": {
                    "n_pairs": 11,
                    "effect": 0.0260869,
                    "ci_low": -0.0173913,
                    "ci_high": 0.0695652,
                    "accuracy_k": 0.7478,
                    "accuracy_0": 0.7217,
                },
                "user_swap": {
                    "n_pairs": 12,
                    "accuracy": 0.5833333,
                    "ci_low": 0.4166666,
                    "ci_high": 0.75,
                    "both_right": 0.1666666,
                    "parse_failure_rate": 0.0,
                },
            },
            "stylometric (char n-grams)": {
                "exemplar_effect": {
                    "n_pairs": 11,
                    "effect": -0.3333333,
                    "ci_low": -0.7777777,
                    "ci_high": 0.1111111,
                    "accuracy_k": 0.33,
                    "accuracy_0": 0.66,
                },
                "user_swap": {
                    "n_pairs": 12,
                    "accuracy": 0.8333333,
                    "ci_low": 0.6666666,
                    "ci_high": 1.0,
                    "both_right": 0.6666666,
                    "parse_failure_rate": 0.0,
                },
            },
        },
    }
    return [
        _csv(p / "eval" / "overall.csv", OVERALL_CSV),
        _csv(p / "eval" / "by_negative_type.csv", by_type),
        _csv(p / "eval" / "by_k.csv", by_k),
        _csv(p / "eval" / "by_seen.csv", by_seen),
        _json(p / "eval" / "personalization.json", personalization),
        _json(p / "eval" / "metrics.json", {}),
    ]


def _bon(p: Path) -> list[Path]:
    info = {"tasks": 4, "drafts": 3, "policy_steps": 2, "after_wins": 4.0, "decided": 8.0}
    summary = """
method,tasks,real preferred,rp_low,rp_high,style distance,sd_low,sd_high,PersRM win rate
random,4,0.75,0.25,1.0,21.6,7.6,43.6,0.5
PersRM,4,0.5,0.0,0.75,20.8,6.6,43.5,0.5
author's real text,4,,,,6.5,5.6,7.8,
"""
    return [_json(p / "bon" / "info.json", info), _csv(p / "bon" / "summary.csv", summary)]


WRITERS = {
    "00_setup": lambda p: [_json(p / "environment.json", {})],
    "01_exemplars": _exemplars,
    "02_synthetic_pairs": _pairs,
    "03_sft_qlora": _sft,
    "04_grpo_unsloth": _grpo,
    "05_evaluation": _eval,
    "06_personalized_generation": _bon,
}
CONFIG = {
    "03_sft_qlora": {"sft_negative_types": ["style_random"]},
    "04_grpo_unsloth": {"grpo_num_generations": 4},
}


def make_run(root: Path, name: str = "syn-1", last: str = "06_personalized_generation") -> Path:
    """A run folder with stages up to ``last`` done, each with the files it writes."""
    run = RunFolder.create(name, "smoke", root=root)
    for stage in STAGE_ORDER[: STAGE_ORDER.index(last) + 1]:
        run.start_stage(stage, CONFIG.get(stage))
        run.finish_stage(stage, WRITERS[stage](run.path))
    (run.path / "RESULTS.md").write_text(f"# Results: run `{name}`\n")
    return run.path


@pytest.fixture
def run_path(runs_root: Path) -> Path:
    return make_run(runs_root)


def test_counts_are_counted_in_the_runs_files(run_path: Path):
    r = figures.results_from_run(run_path)
    manifest = json.loads((run_path / "manifest.json").read_text())
    assert (r["profile"], r["run"], r["measured_on"]) == (
        "smoke",
        "syn-1",
        manifest["created_at"][:10],
    )
    assert r["data"] == {
        "texts": 26,
        "authors": {"train": 3, "val": 1, "test": 3},
        "texts_per_author": 4,
        "pairs": {"train": 5, "val": 3, "test": 11, "seen_test": 2},
    }
    assert r["sft"] == {
        "negative_types": ["style_random"],
        "pairs": 5,
        "traces": 9,
        "steps": 7,
        "seconds": 13,
        "loss_first": 0.988,
        "loss_last": 0.023,
        "val_pairs": 3,
        "val_accuracy_before": 0.5,
        "val_accuracy_after": 0.833,
    }
    assert r["grpo"] == {
        "preflight_checked": 16,
        "preflight_kept": 6,
        "preflight_varied": 3,
        "group": 4,
        "steps": 3,
        "seconds": 40,
        "reward_per_step": [-0.3, 0.7, 1.25],
        "val_pairs": 3,
        "val_reward_before": 0.726,
        "val_reward_after": 0.779,
    }
    assert r["bon"] == {
        "tasks": 4,
        "drafts": 3,
        "real_preferred": {"random": 0.75, "PersRM": 0.5},
        "real_preferred_ci": [0.0, 0.75],
        "policy_steps": 2,
        "policy_wins": 4,
        "policy_decided": 8,
    }
    assert r["reading"] == {}
    assert figures.results_from_run(run_path, {"05_evaluation": "x"})["reading"] == {
        "05_evaluation": "x"
    }
    for name in ("exemplars.jsonl", "pairs/", "sft/traces.jsonl", "eval/overall.csv", "bon/"):
        assert name in r["source"], name


def test_accuracies_are_the_csvs_rounded_as_the_runs_page(run_path: Path):
    ev = figures.results_from_run(run_path)["eval"]
    assert (ev["unseen_pairs"], ev["seen_pairs"]) == (11, 4)
    assert ev["overall"] == {
        "random": {"accuracy": 0.491, "ci": [0.426, 0.548], "says_a": 0.5, "swap": 0.47},
        "SFT": {"accuracy": 0.739, "ci": [0.678, 0.796], "says_a": None, "swap": 0.687},
        "SFT + GRPO": {"accuracy": 0.748, "ci": [0.691, 0.809], "says_a": 0.51, "swap": 0.687},
    }
    # and each equals its row of overall.csv, rounded to the page's 3 decimals
    for line in OVERALL_CSV.strip().splitlines()[1:]:
        model, _, accuracy, low, high, *_ = line.split(",")
        entry = ev["overall"][model]
        assert entry["accuracy"] == round(float(accuracy), 3)
        assert entry["ci"] == [round(float(low), 3), round(float(high), 3)]
    assert ev["k0"] == {"model": "SFT + GRPO", "accuracy": 0.722, "ci": [0.665, 0.778]}
    # the judges the notebooks show, types in the tables' order; no interval under 10 pairs
    assert ev["by_type"] == {
        "SFT": {
            "style_random": {"n": 9, "accuracy": 0.889, "ci": None},
            "cross_author": {"n": 2, "accuracy": 0.25, "ci": None},
        },
        "SFT + GRPO": {"style_random": {"n": 11, "accuracy": 0.909, "ci": [0.818, 1.0]}},
    }
    assert list(ev["by_type"]["SFT"]) == ["style_random", "cross_author"]


def test_personalization_is_the_runs_personalization_json(run_path: Path):
    p = figures.results_from_run(run_path)["personalization"]
    assert (p["final"], p["user_swap_items"], p["unseen_pairs"]) == ("SFT + GRPO", 12, 11)
    assert p["seconds"] == {"SFT + GRPO, user-swap": 41.2}  # rounded as every figure
    assert p["models"] == {
        "SFT + GRPO": {
            "exemplar_effect": {"effect": 0.026, "ci": [-0.017, 0.07], "n": 11},
            "user_swap": {"accuracy": 0.583, "ci": [0.417, 0.75], "n": 12, "both_right": 0.167},
        },
        "stylometric (char n-grams)": {
            "exemplar_effect": {"effect": -0.333, "ci": [-0.778, 0.111], "n": 11},
            "user_swap": {"accuracy": 0.833, "ci": [0.667, 1.0], "n": 12, "both_right": 0.667},
        },
    }


def test_a_stage_the_run_has_not_finished_leaves_its_section_out(runs_root: Path):
    path = make_run(runs_root, "no-grpo", last="03_sft_qlora")
    RunFolder.open(path).start_stage("04_grpo_unsloth")  # started, never finished
    _grpo(path)  # even with its files on disk
    r = figures.results_from_run(path)
    assert "sft" in r and r["sft"]["steps"] == 7
    for absent in ("grpo", "eval", "personalization", "bon"):
        assert absent not in r, absent
    assert "grpo/" not in r["source"]


def test_a_run_without_personalization_json_has_no_such_section(run_path: Path):
    (run_path / "eval" / "personalization.json").unlink()
    r = figures.results_from_run(run_path)
    assert "personalization" not in r and r["eval"]["overall"]["SFT"]["accuracy"] == 0.739


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("model,n_pairs,accuracy\nSFT,11,0.7\n", "no column 'ci_low'"),
        (OVERALL_CSV.replace("0.7391304347", "n/a", 1), "line 3, field 'accuracy'"),
    ],
)
def test_a_malformed_csv_is_a_data_error_naming_the_file(run_path: Path, text: str, says: str):
    _csv(run_path / "eval" / "overall.csv", text)
    with pytest.raises(DataError) as err:
        figures.results_from_run(run_path)
    assert str(run_path / "eval" / "overall.csv") in str(err.value)
    assert says in str(err.value)
    assert "--only 05_evaluation --force" in str(err.value)  # the fix


def test_a_missing_or_malformed_json_is_a_data_error_naming_the_file(run_path: Path):
    (run_path / "grpo" / "preflight.json").unlink()
    with pytest.raises(DataError, match=r"grpo/preflight\.json.*04_grpo_unsloth"):
        figures.results_from_run(run_path)
    _json(run_path / "grpo" / "preflight.json", {"checked": 16})
    with pytest.raises(DataError, match=r"preflight\.json, field 'kept'"):
        figures.results_from_run(run_path)
    (run_path / "sft" / "traces.jsonl").write_text('{"pair_id": "p0"}\n{not json\n')
    with pytest.raises(DataError, match=r"traces\.jsonl, line 2"):
        figures.results_from_run(run_path)


def test_the_05_block_leads_with_personalization(run_path: Path):
    record = figures.results_from_run(run_path)
    block = figures.found_block("05_evaluation", {"cpu": record})
    head = f"run `{record['run']}` of {record['measured_on']}:\n\n"
    body = block.split(head, 1)[1]
    lines = body.splitlines()
    assert lines[0].startswith(
        "- User-swap accuracy of the final judge, SFT + GRPO: 0.583 [0.417, 0.750], n=12 items"
    )
    assert lines[1].startswith(
        "- Exemplar effect of the final judge, SFT + GRPO: +0.026 [-0.017, 0.070], n=11 pairs"
    )
    assert lines[2] == (
        "- User-swap accuracy of stylometric (char n-grams): 0.833 [0.667, 1.000], n=12 items."
    )
    assert "- Exemplar effect of stylometric (char n-grams): -0.333 [-0.778, 0.111]" in lines[3]
    assert "Bradley-Terry RM" not in "\n".join(lines[:5])  # not measured in this run
    # everything else is still there, after it
    assert "| SFT | 0.739 [0.678, 0.796] | – | 0.69 |" in body
    assert "the exemplar adds 0.026" in body
    # without the section the block is what it was
    del record["personalization"]
    plain = figures.found_block("05_evaluation", {"cpu": record})
    assert "User-swap" not in plain
    assert plain.split(head, 1)[1].startswith("On 11 unseen-author test pairs")


def test_the_05_block_gives_the_sft_judges_user_swap_after_the_final_one(run_path: Path):
    """Run cpu-long-a measured the SFT judge on the user-swap test (0.550) beside the final
    judge (0.535); the block showed only the final judge, so a reader could not see that GRPO
    had lost 0.015 of what SFT read."""
    record = figures.results_from_run(run_path)
    record["personalization"]["models"]["SFT"] = {
        "exemplar_effect": None,
        "user_swap": {"accuracy": 0.55, "ci": [0.52, 0.583], "n": 100, "both_right": 0.18},
    }
    lines = figures.found_block("05_evaluation", {"cpu": record}).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("- User-swap"))
    assert lines[first].startswith("- User-swap accuracy of the final judge, SFT + GRPO")
    assert lines[first + 2] == (
        "- User-swap accuracy of the SFT judge, before GRPO: 0.550 [0.520, 0.583], n=100 items."
    )  # after the final judge's two lines; no exemplar effect line for it (not measured)
    assert lines[first + 3].startswith("- User-swap accuracy of stylometric (char n-grams)")


def test_sync_writes_the_record_and_the_runs_page(run_path: Path, tmp_path: Path):
    root = tmp_path / "repo"
    results = root / "docs" / "results" / "smoke"
    results.mkdir(parents=True)
    (results / "run-older.md").write_text("an earlier run's page")
    earlier = {"run": "older", "reading": {"05_evaluation": "what the earlier run meant"}}
    (results / "results.json").write_text(json.dumps(earlier))
    dest, page, kept = figures.write_results_from_run(run_path, root, keep_reading=True)
    assert kept == earlier and page.name == "run-syn-1.md"
    assert sorted(p.name for p in results.iterdir()) == ["results.json", "run-syn-1.md"]
    assert page.read_text() == (run_path / "RESULTS.md").read_text()
    written = json.loads(dest.read_text())
    assert written["reading"] == earlier["reading"] and written["sft"]["traces"] == 9
    _, _, kept = figures.write_results_from_run(run_path, root)
    assert kept is None and json.loads(dest.read_text())["reading"] == {}


def test_the_published_page_carries_its_own_plots(runs_root: Path, tmp_path: Path):
    """The published run pages linked ``figures/*.png`` that the docs did not hold (broken
    images in ``docs/results/cpu-long``), and a profile's one flat plot folder showed an earlier
    run's plots under a later run's page. Each published run now gets its own plot folder; a
    plot the run did not draw is named, not linked; a replaced run's plots go with its page."""
    root = tmp_path / "repo"
    pages = {}
    for name in ("syn-1", "syn-2"):
        run_path = make_run(runs_root, name)
        (run_path / "figures").mkdir()
        (run_path / "figures" / "05_by_type.png").write_bytes(name.encode())
        (run_path / "RESULTS.md").write_text(
            f"# Results: run `{name}`\n\n![accuracy by negative type](figures/05_by_type.png)\n"
            "![GRPO curves](figures/04_grpo_curves.png)\n"
        )
        _, pages[name], _ = figures.write_results_from_run(run_path, root)
    plots = root / "docs" / "results" / "smoke" / "figures"
    assert pages["syn-2"].read_text() == (
        "# Results: run `syn-2`\n\n![accuracy by negative type](figures/syn-2/05_by_type.png)\n"
        "*(GRPO curves: this run drew no `figures/04_grpo_curves.png`)*\n"
    )
    assert (plots / "syn-2" / "05_by_type.png").read_bytes() == b"syn-2"
    assert not pages["syn-1"].exists() and not (plots / "syn-1").exists()
    assert sorted(p.name for p in plots.iterdir()) == ["syn-2"]
    (plots / "syn-2" / "05_seen.png").write_bytes(b"from an earlier publish")
    figures.write_results_from_run(runs_root / "syn-2", root)  # published again: exactly its plots
    assert sorted(p.name for p in (plots / "syn-2").iterdir()) == ["05_by_type.png"]
