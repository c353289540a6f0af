"""A smoke run folder with stages 00-02 done, built through the package (shared by tests)."""

from __future__ import annotations

from persrm_utils.data.exemplars import collect
from persrm_utils.data.pairs import make_pairs, offline_backend, plan_pairs
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.profiles import get_profile
from persrm_utils.records import write_jsonl
from persrm_utils.run.folders import RunFolder


def build_smoke_run(name: str) -> RunFolder:
    """Stages 00-02 through the package functions (what the notebooks do, minus the teaching)."""
    profile = get_profile("smoke")
    run = RunFolder.create(name, "smoke")
    run.start_stage("00_setup")
    run.file("environment.json").write_text("{}")
    run.finish_stage("00_setup", ["environment.json"])
    run.start_stage("01_exemplars")
    exemplars = collect(profile)
    write_jsonl(run.file("exemplars.jsonl"), exemplars)
    run.finish_stage("01_exemplars", ["exemplars.jsonl"])
    run.start_stage("02_synthetic_pairs")
    planned = plan_pairs(exemplars, profile.max_exemplars, profile.seed)
    by_id = {e.text_id: e for e in exemplars}
    gen = CachedGenerator(offline_backend(planned, by_id), run.file("cache/negatives.jsonl"))
    result = make_pairs(planned, exemplars, gen, 60, "rules", progress=False)
    files = [write_jsonl(run.file(f"pairs/{s}.jsonl"), p) for s, p in result.pairs.items()]
    run.finish_stage("02_synthetic_pairs", files)
    return run
