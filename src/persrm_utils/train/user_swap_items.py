"""Which user-swap items SFT trains on: a seeded draw, or the ones the base model can read.

A user-swap item (:mod:`persrm_utils.data.user_swap`) is two real texts of two training
authors, shown once with each author's exemplars; only the exemplars decide the label. Many
30-word texts of two Reuters writers cannot be told apart at all, so their labels teach noise:
288 such items seen once left SmolLM2's loss at ln 2 (probe ``us99m288e1`` in RESULTS.md). With
``profile.sft_user_swap_teacher`` the untrained base model is the teacher: its likelihood
(:func:`persrm_utils.judge.likelihood.items_the_model_reads`) scores
``sft_user_swap_candidates`` items, and SFT trains on the first ``sft_user_swap_items`` whose
writer it names under both users. It needs no labels of ours and sees only training authors,
so the test items stay untouched.

Scoring the candidates costs minutes on a CPU (three forward passes per item and user), so the
choice is written to ``sft/user_swap_items.json`` with the settings it depends on, and a rerun
with the same settings (a resumed notebook, ``persrm sft`` after an interruption) reads it back
instead of loading the model again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from persrm_utils.data.user_swap import user_swap_pairs
from persrm_utils.errors import DataError
from persrm_utils.profiles import Profile
from persrm_utils.records import Exemplar, Pair

CHOICE_FILE = "sft/user_swap_items.json"

# the profile fields the choice depends on: any change and the candidates are scored again
_SETTINGS = (
    "model_source",
    "model_name",
    "load_in_4bit",
    "max_exemplars",
    "seed",
    "sft_user_swap_items",
    "sft_user_swap_candidates",
)


def drawn_items(profile: Profile, by_id: dict[str, Exemplar]) -> list[Pair]:
    """The seeded draw of training authors' user-swap items, before any teacher: two pairs
    (users a and b) per item. GRPO's own draw leaves all of these out."""
    count = profile.user_swap_draw
    if not count:
        return []
    return user_swap_pairs(list(by_id.values()), "train", count, profile.max_exemplars,
                           profile.seed)  # fmt: skip


def _settings(profile: Profile, by_id: dict[str, Exemplar]) -> dict[str, Any]:
    settings = {name: getattr(profile, name) for name in _SETTINGS}
    settings["exemplars"] = len(by_id)
    return settings


def choose_user_swap_items(
    profile: Profile,
    by_id: dict[str, Exemplar],
    run_path: Path | None = None,
    loaded: Any = None,
    batch_size: int = 8,
) -> tuple[list[Pair], dict[str, Any]]:
    """The user-swap pairs SFT trains on, and a report of how they were chosen.

    Without ``sft_user_swap_teacher``: the first ``sft_user_swap_items`` of the seeded draw,
    and the report says so. With it: the candidates the base model reads under both users,
    the first ``sft_user_swap_items`` of them. ``loaded`` is a
    :class:`~persrm_utils.models.loader.LoadedModel` of the *untrained* base model, if one is
    already in memory; otherwise it is loaded here and freed afterwards. With ``run_path`` the
    choice is cached in ``sft/user_swap_items.json`` (read back when the settings match).

    The report holds ``candidates`` and ``kept`` items, the teacher's user-swap ``accuracy`` on
    the candidates, ``used`` (items SFT trains on), ``seconds`` and whether it came from the
    cache. Fewer readable items than asked for is not an error: SFT trains on those there are,
    and the report says how many.
    """
    drawn = drawn_items(profile, by_id)
    if not profile.sft_user_swap_teacher or not drawn:
        used = len(drawn) // 2
        return drawn, {"teacher": None, "candidates": used, "kept": used, "used": used}
    settings = _settings(profile, by_id)
    cache = run_path / CHOICE_FILE if run_path is not None else None
    record = _read_cache(cache, settings)
    if record is None:
        record = _score(profile, by_id, drawn, loaded, batch_size)
        record["settings"] = settings
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(record, indent=2))
        record["cached"] = False
    else:
        record["cached"] = True
    groups = set(record["groups"])
    known = {str(p.meta["swap_group"]) for p in drawn}
    if not groups <= known:
        raise DataError(
            f"{cache} names user-swap items that this run's exemplars do not draw",
            f"delete {cache} and run the cell again: the base model scores the candidates anew.",
        )
    kept = [p for p in drawn if p.meta["swap_group"] in groups]
    report = {key: value for key, value in record.items() if key not in ("groups", "settings")}
    return kept, report


def _read_cache(cache: Path | None, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The cached choice, if it was made with these settings (anything else: None)."""
    if cache is None or not cache.is_file():
        return None
    try:
        record = json.loads(cache.read_text())
    except json.JSONDecodeError:
        return None  # a write cut short: score again
    if record.get("settings") != settings or not isinstance(record.get("groups"), list):
        return None
    return record


def _score(
    profile: Profile,
    by_id: dict[str, Exemplar],
    drawn: list[Pair],
    loaded: Any,
    batch_size: int,
) -> dict[str, Any]:
    """Score the candidates with the base model's likelihood; keep the first items it reads."""
    from persrm_utils.judge.likelihood import items_the_model_reads
    from persrm_utils.models.loader import load_model, release_memory

    started = time.perf_counter()
    base = loaded if loaded is not None else load_model(profile)
    try:
        readable, stats = items_the_model_reads(
            base.model, base.tokenizer, drawn, by_id, batch_size=batch_size
        )
    finally:
        if loaded is None:
            del base
            release_memory()
    # the readable items in the draw's order (two pairs each), the first sft_user_swap_items
    groups = list(dict.fromkeys(str(p.meta["swap_group"]) for p in readable))
    groups = groups[: profile.sft_user_swap_items]
    return {
        "teacher": f"{profile.model_name} (untrained), likelihood under both users",
        "candidates": stats["candidates"],
        "kept": stats["kept"],
        "accuracy": stats["accuracy"],
        "used": len(groups),
        "seconds": round(time.perf_counter() - started, 1),
        "groups": groups,
    }
