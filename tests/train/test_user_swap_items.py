"""Choosing SFT's user-swap items: the seeded draw, or the items the untrained model reads."""

from __future__ import annotations

import json

import pytest

from persrm_utils.data.exemplars import collect
from persrm_utils.data.user_swap import user_swap_pairs
from persrm_utils.errors import ConfigError, DataError
from persrm_utils.models.loader import load_model
from persrm_utils.profiles import get_profile
from persrm_utils.train import choose_user_swap_items, grpo_pairs, sft_pairs
from persrm_utils.train.user_swap_items import CHOICE_FILE

TEACHER = {"sft_user_swap_items": 3, "sft_user_swap_teacher": True, "sft_user_swap_candidates": 10}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSRM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        profile = get_profile("smoke")
        exemplars = collect(profile)
        yield load_model(profile), {e.text_id: e for e in exemplars}


def test_without_the_teacher_sft_gets_the_seeded_draw(smoke):
    """Why: the `cpu-long-a` recipe (48 unfiltered items) must train on the same items as
    before the teacher existed, or its measured figures no longer describe the profile."""
    _, by_id = smoke
    profile = get_profile("smoke", sft_user_swap_items=4)
    items, report = choose_user_swap_items(profile, by_id)
    assert items == user_swap_pairs(list(by_id.values()), "train", 4, profile.max_exemplars, 0)
    assert report == {"teacher": None, "candidates": 4, "kept": 4, "used": 4}
    assert sft_pairs([], profile, by_id) == items


def test_the_teacher_keeps_whole_readable_items_and_caches_its_choice(smoke, tmp_path, monkeypatch):
    """Why: scoring the candidates takes minutes on a CPU (probe us99m96t: 569 s for 240), so a
    resumed notebook must not load the model again, and a changed setting must not reuse a
    choice made for other candidates."""
    loaded, by_id = smoke
    profile = get_profile("smoke", **TEACHER)
    items, report = choose_user_swap_items(profile, by_id, tmp_path, loaded=loaded)
    assert report["candidates"] == 10 and report["used"] == min(3, report["kept"])
    assert report["cached"] is False and report["teacher"].startswith("tiny-qwen2 (untrained)")
    assert len(items) == 2 * report["used"]
    by_group: dict[str, list[str]] = {}
    for pair in items:
        by_group.setdefault(pair.meta["swap_group"], []).append(pair.meta["user"])
    assert all(sorted(users) == ["a", "b"] for users in by_group.values())
    drawn = user_swap_pairs(list(by_id.values()), "train", 10, profile.max_exemplars, 0)
    assert [p.pair_id for p in drawn if p in items] == [p.pair_id for p in items]
    saved = json.loads((tmp_path / CHOICE_FILE).read_text())
    assert saved["groups"] == list(by_group) and saved["settings"]["sft_user_swap_candidates"] == 10

    def no_model(*_args, **_kwargs):
        raise AssertionError("the cached choice should have been read back")

    monkeypatch.setattr("persrm_utils.models.loader.load_model", no_model)
    again, cached = choose_user_swap_items(profile, by_id, tmp_path)
    assert again == items and cached["cached"] is True
    monkeypatch.undo()
    other = get_profile("smoke", **{**TEACHER, "sft_user_swap_candidates": 8})
    _, fresh = choose_user_swap_items(other, by_id, tmp_path, loaded=loaded)
    assert fresh["cached"] is False and fresh["candidates"] == 8


def test_a_cache_naming_items_the_run_does_not_draw_is_refused(smoke, tmp_path):
    loaded, by_id = smoke
    profile = get_profile("smoke", **TEACHER)
    choose_user_swap_items(profile, by_id, tmp_path, loaded=loaded)
    path = tmp_path / CHOICE_FILE
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "groups": ["not-an-item"]}))
    with pytest.raises(DataError, match=r"user_swap_items\.json") as err:
        choose_user_swap_items(profile, by_id, tmp_path)
    assert "delete" in str(err.value)


def test_sft_pairs_refuses_to_draw_items_the_teacher_should_choose(smoke):
    """Why: silently training on the unfiltered draw would measure the 0.505 recipe
    (us99m288e1) under the name of the filtered one."""
    _, by_id = smoke
    with pytest.raises(DataError, match="sft_user_swap_teacher") as err:
        sft_pairs([], get_profile("smoke", **TEACHER), by_id)
    assert "choose_user_swap_items" in str(err.value)


def test_fewer_candidates_than_items_is_refused_before_any_model_loads():
    with pytest.raises(ConfigError, match="sft_user_swap_candidates = 2 is fewer"):
        get_profile("smoke", **{**TEACHER, "sft_user_swap_candidates": 2})
    assert get_profile("smoke", **{**TEACHER, "sft_user_swap_candidates": None})


def test_grpo_never_asks_about_any_candidate_the_teacher_scored(smoke):
    """Why: a candidate the teacher dropped was still scored with its labels' texts in view of
    SFT's choice; GRPO's items must be pairs SFT's draw never held, kept or not."""
    _, by_id = smoke
    profile = get_profile("smoke", **TEACHER, grpo_negative_types=(), grpo_user_swap_items=12)
    candidates = {
        p.meta["swap_group"]
        for p in user_swap_pairs(list(by_id.values()), "train", 10, profile.max_exemplars, 0)
    }
    pool = grpo_pairs([], profile, by_id)
    assert pool and not candidates & {p.meta["swap_group"] for p in pool}


def test_persrm_sft_trains_on_the_chosen_items_and_records_the_choice(tmp_path, monkeypatch,
                                                                       runs_root):  # fmt: skip
    """Why: the teacher lever was a probe option only; inside the series the stage must train on
    the kept items (both users, both orders) and keep the choice beside the adapter, so the run
    says what its SFT data was and a rerun of the stage does not score the candidates again."""
    from smoke_run import build_smoke_run

    from persrm_utils.cli import main
    from persrm_utils.records import Exemplar, Pair, read_jsonl
    from persrm_utils.run.folders import RunFolder
    from persrm_utils.train.traces import Trace

    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    run = build_smoke_run("teacher")
    code = main(["sft", "--run", "teacher", "--set", "sft_max_steps=1",
                 "--set", "sft_user_swap_items=2", "--set", "sft_user_swap_teacher=true",
                 "--set", "sft_user_swap_candidates=8"])  # fmt: skip
    assert code == 0
    summary = json.loads((run.path / "sft" / "summary.json").read_text())
    report = summary["traces"]["user_swap_items"]
    assert report["candidates"] == 8 and report["used"] == min(2, report["kept"])
    profile = get_profile("smoke", sft_user_swap_items=2, sft_user_swap_teacher=True,
                          sft_user_swap_candidates=8)  # fmt: skip
    by_id = {e.text_id: e for e in read_jsonl(run.path / "exemplars.jsonl", Exemplar)}
    kept, again = choose_user_swap_items(profile, by_id, run.path)  # read back, not rescored
    assert again["cached"] is True and len(kept) == 2 * report["used"]
    traces = read_jsonl(run.path / "sft" / "traces.jsonl", Trace)
    swap_ids = [t.pair_id for t in traces if t.pair_id in {p.pair_id for p in kept}]
    assert len(swap_ids) == 4 * report["used"]  # two users x two orders per item
    pairs = {p.pair_id for p in read_jsonl(run.path / "pairs" / "train.jsonl", Pair)}
    assert all(t.pair_id in pairs or t.pair_id in swap_ids for t in traces)  # nothing else
    record = RunFolder.open(run.path).manifest.stages["03_sft_qlora"]
    assert CHOICE_FILE in {a.path for a in record.artifacts}
