"""The notebooks executed for real by a Jupyter kernel, as `make demo` runs them."""

from __future__ import annotations

import json
import os

import nbformat
import pytest

from persrm_utils.classroom.knobs import experiments
from persrm_utils.errors import ConfigError
from persrm_utils.records import Exemplar, Pair, read_jsonl
from persrm_utils.run.folders import RunFolder, sha256_of
from persrm_utils.run.runner import StageFailed, run_series, select_stages
from persrm_utils.setup.notebooks import series_notebooks, solutions_notebooks
from persrm_utils.train.traces import Trace

pytestmark = pytest.mark.slow
#: Knob exercises per notebook, on top of the three tiers (warm-up, core, stretch).
KNOB_EXERCISES = {"03_sft_qlora": 3, "04_grpo_unsloth": 3, "05_evaluation": 2}
#: By-hand exercises (LoRA and NF4 in 03, the clipped surrogate in 04), after the tiers.
BY_HAND_EXERCISES = {"03_sft_qlora": 2, "04_grpo_unsloth": 1}


def _checks(stem: str) -> int:
    """How many exercise checks the notebook ``stem`` holds: the three tiers and its extras."""
    return 3 + KNOB_EXERCISES.get(stem, 0) + BY_HAND_EXERCISES.get(stem, 0)


def _outputs(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke series run once (about four minutes), for the tests that read or extend it.

    ``PERSRM_RUNS_DIR`` stays pointed at this run's root until the module ends, so the tests can
    call ``run_series(..., run_name="t")`` on it again (function-scoped ``runs_root`` overrides
    it, and restores it, for the tests that need a fresh folder).
    """
    root = tmp_path_factory.mktemp("smoke") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSRM_RUNS_DIR", str(root))
        yield root, run_series("smoke", run_name="t", progress=False, echo=lambda s: None)


def test_smoke_series_runs_and_hands_over_through_the_manifest(smoke_run):
    runs_root, results = smoke_run
    assert results[0].stage == "00_setup" and results[0].status == "done"
    run = RunFolder.open(runs_root / "t")
    rec = run.manifest.stages["00_setup"]
    assert rec.status == "done" and rec.config["model_source"] == "tiny"
    paths = {a.path: a for a in rec.artifacts}
    assert {"environment.json", "notebooks/00_setup.ipynb"} <= set(paths)
    assert paths["environment.json"].sha256 == sha256_of(run.path / "environment.json")
    env = json.loads((run.path / "environment.json").read_text())
    assert env["model"]["backend"] == "transformers" and env["profile"]["name"] == "smoke"
    assert env["recommended_profile"] in ("smoke", "cpu", "cpu-long", "t4", "24gb")

    executed = nbformat.read(run.path / "notebooks" / "00_setup.ipynb", as_version=4)
    text = _outputs(executed)
    assert "persrm doctor" in text and "backend: transformers" in text
    assert "no field 'lora_rank'" in text  # the notebook's own typo demonstration
    assert "Stage 00_setup done" in text
    params = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert params and 'RUN_NAME = "t"' in params[0].source

    # 01: exemplars with splits, factor table and figures
    done = {r.stage for r in results if r.status == "done"}
    assert {"00_setup", "01_exemplars", "02_synthetic_pairs"} <= done
    exemplars = read_jsonl(run.path / "exemplars.jsonl", Exemplar)
    assert {e.meta["split"] for e in exemplars} == {"train", "val", "test", "seen_test"}
    assert any(e.author_id == "me" and e.meta["split"] == "test" for e in exemplars)
    assert (run.path / "figures" / "01_style_map.png").stat().st_size > 10_000
    assert (run.path / "figures" / "01_signal_by_length.png").stat().st_size > 10_000
    nb01 = _outputs(nbformat.read(run.path / "notebooks" / "01_exemplars.ipynb", 4))
    assert "9 cells, " in nb01 and "char n-grams, k=3" in nb01  # 3 lengths x 3 ks on smoke
    # 02: one pairs file per split, every record valid, every type present
    pairs = [p for s in ("train", "val", "test", "seen_test")
             for p in read_jsonl(run.path / "pairs" / f"{s}.jsonl", Pair)]  # fmt: skip
    assert {p.negative_type for p in pairs} == {
        "style_mimic", "style_random", "minor_replace", "cross_author"}  # fmt: skip
    ids = {e.text_id for e in exemplars}
    assert all(set(p.exemplar_ids) <= ids and p.text_id not in p.exemplar_ids for p in pairs)
    nb02 = _outputs(nbformat.read(run.path / "notebooks" / "02_synthetic_pairs.ipynb", 4))
    assert "negatives/s" in nb02 and "minor_replace_count" in nb02

    # 03: traces, a trained adapter that differs from zero, before/after figures
    sft = run.path / "sft"
    assert (sft / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((sft / "eval_before_after.json").read_text())["after"]["n"] > 0
    assert read_jsonl(sft / "traces.jsonl", Trace)
    # 04: GRPO adapter, metric history with the curves the notebook plots
    history = json.loads((run.path / "grpo" / "train_log.json").read_text())["history"]
    assert history and all("frac_reward_zero_std" in h for h in history)
    assert (run.path / "figures" / "04_grpo_curves.png").is_file()
    # 05: every model and baseline measured, a results page, reproducible metrics
    metrics = json.loads((run.path / "eval" / "metrics.json").read_text())
    assert [m["model"] for m in metrics] == [
        "random", "stylometric (char n-grams)", "Bradley-Terry RM", "base (zero-shot)", "SFT",
        "SFT + GRPO"]  # fmt: skip
    page = (run.path / "RESULTS.md").read_text()
    assert "| SFT + GRPO" in page and "Not run in this run: none." in page
    assert "## Personalized generation (notebook 06): best-of-N" in page  # rewritten by 06
    assert {r.stage for r in results if r.status == "done"} >= {"03_sft_qlora", "05_evaluation"}
    # 06: best-of-N refereed for every method, drafts with their scores, the policy's GRPO run
    summary = (run.path / "bon" / "summary.csv").read_text()
    for method in ("random", "stylometric (char n-grams)", "PersRM", "author's real text"):
        assert f"{method}," in summary or f'"{method}",' in summary, method
    info = json.loads((run.path / "bon" / "info.json").read_text())
    assert info["tasks"] == 3 and info["comparisons"] == 3 * 3 * 2 and info["policy_steps"] == 2
    drafts = [json.loads(line) for line in (run.path / "bon" / "drafts.jsonl").open()]
    assert len(drafts) == 3 and all(len(d["persrm_scores"]) == 3 for d in drafts)
    assert all(d["text_id"] not in d["exemplar_ids"] for d in drafts)
    assert (run.path / "figures" / "06_best_of_n.png").stat().st_size > 5_000
    rerun = run_series("smoke", run_name="t", only=["05"], force=True, progress=False,
                       echo=lambda s: None)  # fmt: skip
    assert rerun[0].status == "done"
    again_metrics = json.loads((run.path / "eval" / "metrics.json").read_text())
    assert again_metrics == metrics, "the same run twice must give the same metrics"

    again = run_series("smoke", run_name="t", progress=False, echo=lambda s: None)
    assert {r.status for r in again if r.stage in done} == {"skipped"}
    forced = run_series("smoke", run_name="t", force=True, only=["00"], progress=False,
                        echo=lambda s: None)  # fmt: skip
    assert forced[0].status == "done"
    assert RunFolder.open(run.path).manifest.stages["00_setup"].runs == 2
    assert RunFolder.open(run.path).manifest.stages["05_evaluation"].runs == 2


def test_solutions_pass_on_the_smoke_run_and_leave_it_unchanged(smoke_run):
    """Every solutions notebook, executed for real: each check prints OK, and nothing but the
    knob experiments (under experiments/) is written."""
    runs_root, _ = smoke_run
    run_path = runs_root / "t"
    manifest = (run_path / "manifest.json").read_bytes()
    results = run_series("smoke", run_name="t", solutions=True, progress=False,
                         echo=lambda s: None)  # fmt: skip
    solved = [r for r in results if r.stage.endswith("_solutions")]
    assert [r.stage for r in solved] == [p.stem for p in solutions_notebooks()]
    assert {r.status for r in solved} == {"done"}
    assert {r.status for r in results if r not in solved} == {"skipped"}
    assert (run_path / "manifest.json").read_bytes() == manifest, "solutions must only read"
    for r in solved:
        assert r.output == run_path / "notebooks" / "solutions" / f"{r.stage}.ipynb"
        text = _outputs(nbformat.read(r.output, as_version=4))
        expected = _checks(r.stage.removesuffix("_solutions"))
        assert text.count("OK: ") == expected and "Not answered yet" not in text, r.stage
    for path in series_notebooks():  # the series ran with the exercises unanswered
        text = _outputs(nbformat.read(run_path / "notebooks" / path.name, as_version=4))
        assert text.count("Not answered yet: ") == _checks(path.stem), path.name
    knobs = {e["label"] for e in experiments(run_path).values()}
    assert {"lr-1x", "lr-0.1x", "types-all", "types-style_random", "reasoning-none",
            "reasoning-full", "beta-0.04", "beta-0.4", "G2", "G4", "len32",
            "len-profile"} <= knobs  # fmt: skip


def test_a_failing_cell_stops_the_series_and_shows_the_cell(runs_root, tmp_path):
    lines: list[str] = []
    with pytest.raises(StageFailed) as err:
        run_series("smoke", run_name="bad", overrides={"model_path": str(tmp_path)},
                   progress=False, echo=lines.append)  # fmt: skip
    msg = str(err.value)
    assert "00_setup.ipynb failed in cell" in msg
    assert "ModelUnavailableError" in msg and "no config.json" in msg
    assert "loaded = load_model(profile)" in msg  # the failing cell's source
    assert "--run bad --from 00_setup" in msg
    assert (runs_root / "bad" / "notebooks" / "00_setup.ipynb").is_file()
    assert RunFolder.open(runs_root / "bad").status("00_setup") == "failed"
    assert any("failed" in line for line in lines)  # the summary table was printed


def test_stage_selection():
    present, absent = select_stages()
    assert present[0].name == "00_setup"
    assert [s.name for s in present + absent] == sorted(s.name for s in present + absent)
    assert select_stages(from_stage="00")[0][0].name == "00_setup"
    with pytest.raises(ConfigError):
        select_stages(from_stage="01", only=["02"])


def test_a_notebook_run_before_its_inputs_names_the_notebook_to_run_first(runs_root):
    run_series("smoke", run_name="gap", only=["00"], progress=False, echo=lambda s: None)
    with pytest.raises(StageFailed) as err:
        run_series("smoke", run_name="gap", only=["02"], progress=False, echo=lambda s: None)
    msg = str(err.value)
    assert "MissingInputsError" in msg
    assert "02_synthetic_pairs needs the outputs of 01_exemplars" in msg
    assert "Run notebooks/01_exemplars.ipynb first" in msg


def test_run_force_trains_again_instead_of_resuming_the_finished_checkpoint(smoke_run):
    """`persrm run --force` reran notebook 03, whose trainer resumed the finished run's last
    checkpoint (same settings) and stopped at once: "--force" retrained nothing. Its kernels now
    get PERSRM_TRAIN_AGAIN, and the trainer starts fresh, as `persrm sft --force` does."""
    runs_root, _ = smoke_run
    run_path = runs_root / "t"
    before = json.loads((run_path / "sft" / "train_log.json").read_text())
    forced = run_series("smoke", run_name="t", only=["03"], force=True, progress=False,
                        echo=lambda s: None)  # fmt: skip
    assert forced[0].status == "done"
    log = json.loads((run_path / "sft" / "train_log.json").read_text())
    assert log["resumed_from"] is None
    assert [s for s, _ in log["losses"]] == [s for s, _ in before["losses"]]
    assert "PERSRM_TRAIN_AGAIN" not in os.environ  # the kernel's, not this process's


def test_the_grpo_probe_judges_the_runs_own_items_and_pairs_with_its_judges(smoke_run, tmp_path):
    """A GRPO prompt pool measured on different items than the run's would compare two
    intervals side by side; the probe judges the user-swap items and cross_author pairs notebook
    05 judged, pairs its user-swap verdicts with the run's SFT and SFT + GRPO ones, writes its
    adapter outside the run folder and leaves the run untouched. A run without notebook 05 is
    refused, naming it."""
    import json

    from smoke_run import build_smoke_run

    from persrm_utils.bench.grpo_probe import run_grpo_probe
    from persrm_utils.errors import MissingInputsError

    runs_root, _ = smoke_run
    run = runs_root / "t"
    manifest = (run / "manifest.json").read_bytes()
    personal = json.loads((run / "eval" / "personalization.json").read_text())
    changed = {"grpo_user_swap_items": 2, "grpo_max_steps": 1}
    result = run_grpo_probe(run, "pool", changed, tmp_path)

    assert result["grpo"]["steps"] == 1 and (tmp_path / "pool" / "grpo" / "adapter").is_dir()
    assert result["pool"]["prompts"] == 2 * result["pool"]["pairs"]  # both orders
    n = personal["user_swap_items"]
    swap = result["user_swap"]
    assert swap["probe"]["n_pairs"] == n
    for model in ("SFT", "SFT + GRPO"):
        paired = swap[f"minus {model}"]
        assert paired["n_items"] == n and paired["accuracy_x"] == swap["probe"]["accuracy"]
        assert paired["accuracy_y"] == pytest.approx(
            personal["models"][model]["user_swap"]["accuracy"], abs=1e-4
        )
    crossed = {json.loads(line)["pair_id"] for line in (run / "eval" / "predictions.jsonl").open()
               if '"cross_author"' in line and ", k=0" in line}  # fmt: skip
    assert result["cross_author"]["pairs"] == len(crossed) > 0
    assert result["cross_author"]["exemplar_effect"]["n_pairs"] == len(crossed)
    json.loads(json.dumps(result, allow_nan=False))  # one strict JSON line per probe
    assert (run / "manifest.json").read_bytes() == manifest

    with pytest.raises(MissingInputsError, match="05_evaluation"):
        run_grpo_probe(build_smoke_run("no-eval").path, "pool", changed, tmp_path)
