"""Judging with the base model and the adapters: one model in memory at a time."""

from __future__ import annotations

import gc
import weakref

from persrm_utils.evaluate import held_out
from persrm_utils.models.loader import add_lora, load_model
from persrm_utils.profiles import get_profile
from persrm_utils.records import Pair
from persrm_utils.train.trainer import ADAPTER


def test_each_judge_is_released_before_the_next_one_loads(tmp_path, monkeypatch):
    """The base model stayed referenced while the SFT and GRPO judges loaded: on the 24gb
    profile, three 7B copies on one GPU at once (out of memory in notebook 05)."""
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    profile = get_profile("smoke")
    sft = load_model(profile)
    add_lora(sft, profile)
    for folder in ("sft", "grpo"):
        sft.model.save_pretrained(tmp_path / "run" / folder / ADAPTER)
    del sft
    gc.collect()

    alive_at_load: list[int] = []
    earlier: list[weakref.ref] = []

    def spy(load):
        def wrapped(*args, **kwargs):
            gc.collect()  # whatever is left now is still referenced, not merely uncollected
            alive_at_load.append(sum(ref() is not None for ref in earlier))
            loaded = load(*args, **kwargs)
            earlier.append(weakref.ref(loaded.model))
            return loaded

        return wrapped

    monkeypatch.setattr(held_out, "load_model", spy(held_out.load_model))
    monkeypatch.setattr(held_out, "load_with_adapter", spy(held_out.load_with_adapter))
    monkeypatch.setattr(held_out, "judge_pairs", lambda *args, **kwargs: [])
    judged = held_out.judge_with_adapters(profile, tmp_path / "run", [], {})
    assert set(judged) == {held_out.BASE, held_out.SFT, held_out.GRPO, f"{held_out.GRPO}, k=0"}
    assert alive_at_load == [0, 0, 0]


def _pair(i: int, split: str) -> Pair:
    return Pair(pair_id=f"p{i:03d}", split=split, author_id="alice", text_id=f"t{i}",
                prompt="An opening.", chosen="The real text.", rejected="A negative.",
                negative_type="cross_author", exemplar_ids=["e0"], chosen_position="A",
                negative_source="real:x", seen_author=split == "seen_test")  # fmt: skip


def test_the_zero_shot_reference_is_a_seeded_draw_of_unseen_pairs_in_their_order():
    """Notebook 05 spent 254 verdicts (about 200 s of run cpu-c's 50 minutes) on the untrained
    base model, a reference point; the cpu profile now draws 24 unseen-author pairs for it."""
    pairs = [_pair(i, "seen_test" if i % 10 == 0 else "test") for i in range(100)]
    cpu = get_profile("cpu")
    drawn = held_out.zero_shot_pairs(cpu, pairs)
    assert len(drawn) == cpu.eval_zero_shot_pairs == 24
    assert all(p.split == "test" for p in drawn)
    assert [p.pair_id for p in drawn] == sorted(p.pair_id for p in drawn)  # the pairs' order
    assert drawn == held_out.zero_shot_pairs(cpu, pairs)  # seeded: the same draw every time
    assert drawn != held_out.zero_shot_pairs(cpu.override(seed=1), pairs)
    assert held_out.zero_shot_pairs(cpu.override(eval_zero_shot_pairs=500), pairs) == [
        p for p in pairs if p.split == "test"
    ]  # a cap above the count: every unseen pair
    assert held_out.zero_shot_pairs(get_profile("smoke"), pairs) == pairs  # None: all
