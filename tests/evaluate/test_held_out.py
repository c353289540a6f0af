"""Judging with the base model and the adapters: one model in memory at a time."""

from __future__ import annotations

import gc
import weakref

from persrm_utils.evaluate import held_out
from persrm_utils.models.loader import add_lora, load_model
from persrm_utils.profiles import get_profile
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
