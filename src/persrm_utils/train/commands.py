"""Stages 03 and 04 as one function each, for ``persrm sft`` / ``persrm grpo`` and multi-GPU
launches.

    persrm sft --profile t4 --run t4-1                                   # one process
    accelerate launch -m persrm_utils.cli sft --profile 24gb --run-name r  # several GPUs
    torchrun --nproc_per_node 2 -m persrm_utils.cli sft --profile smoke --run-name r  # 2 CPUs
    persrm grpo --profile t4 --run t4-1

The notebooks ``03_sft_qlora`` and ``04_grpo_unsloth`` run the same steps one cell at a time.
Under a launcher every process trains (the TRL trainers wire up DDP from the launcher's
environment), while only the main process (rank 0) writes traces, adapters and the manifest: two
ranks writing one manifest would corrupt it.

A stage interrupted before it finished resumes from its last checkpoint when it is started again
with the same settings; ``--force``, or any changed training setting, trains it again from the
start, and the adapter of the earlier run stays until the new one is complete
(:mod:`persrm_utils.train.trainer`). The manifest records the fingerprint of the settings the
weights were trained with, the same one the adapter's ``training.json`` holds.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from persrm_utils.data.user_swap import user_swap_pairs
from persrm_utils.errors import DataError, MissingInputsError
from persrm_utils.models.loader import import_backend_first
from persrm_utils.paths import runs_dir
from persrm_utils.profiles import Profile, get_profile
from persrm_utils.records import Exemplar, Pair, read_jsonl, write_jsonl
from persrm_utils.run.folders import MANIFEST, RunFolder, releases_writer
from persrm_utils.train.grpo import grpo_rows, load_policy, preflight, train_grpo
from persrm_utils.train.rewards import reward_funcs
from persrm_utils.train.sft import train_sft
from persrm_utils.train.traces import reasoning_traces, to_sft_rows
from persrm_utils.train.trainer import (
    ADAPTER,
    TRAIN_LOG,
    TRAINING_RECORD,
    changed_settings,
    check_adapter,
    read_training_record,
)
from persrm_utils.train.user_swap_items import (
    CHOICE_FILE,
    choose_user_swap_items,
    drawn_items,
)

SFT_STAGE = "03_sft_qlora"


def rank() -> int:
    """This process's global rank under torchrun/accelerate (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def load_stage_inputs(run_path: Path) -> tuple[list[Pair], list[Pair], dict[str, Exemplar]]:
    """Training pairs, validation pairs and exemplars by id, from notebooks 01 and 02."""
    train = read_jsonl(run_path / "pairs" / "train.jsonl", Pair)
    val = read_jsonl(run_path / "pairs" / "val.jsonl", Pair)
    exemplars = read_jsonl(run_path / "exemplars.jsonl", Exemplar)
    return train, val, {e.text_id: e for e in exemplars}


def sft_pairs(
    train: list[Pair],
    profile: Profile,
    by_id: dict[str, Exemplar] | None = None,
    user_swap: list[Pair] | None = None,
) -> list[Pair]:
    """The training pairs SFT writes traces for: those of ``profile.sft_negative_types``, plus
    ``profile.sft_user_swap_items`` user-swap items of training authors.

    A curriculum: a small judge first learns the blatant type it can learn in the budget (the
    `cpu` profile: ``style_random``); GRPO then samples from every training pair and keeps the
    ones the SFT judge is unsure about, which are mostly of the types SFT left out. User-swap
    items (:mod:`persrm_utils.data.user_swap`) are pairs only the exemplars can decide. Pass
    them as ``user_swap`` (from :func:`~persrm_utils.train.user_swap_items.choose_user_swap_items`,
    which a profile with ``sft_user_swap_teacher`` needs, since the base model chooses them);
    otherwise the seeded draw is built here from ``by_id``.
    """
    kinds = profile.sft_negative_types
    out = [p for p in train if kinds is None or p.negative_type in kinds]
    if not profile.sft_user_swap_items:
        return out
    if user_swap is not None:
        return out + user_swap
    if profile.sft_user_swap_teacher:
        raise DataError(
            f"profile '{profile.name}' trains on the user-swap items the base model reads "
            "(sft_user_swap_teacher), which only the model can choose",
            "choose them first and pass them on: items, report = choose_user_swap_items("
            "profile, by_id, run_path); sft_pairs(train, profile, by_id, user_swap=items).",
        )
    if by_id is None:
        raise DataError(
            f"profile '{profile.name}' asks for {profile.sft_user_swap_items} user-swap "
            "items, which are built from the exemplars",
            "pass the exemplars by id: sft_pairs(train, profile, by_id).",
        )
    return out + drawn_items(profile, by_id)


def grpo_pairs(train: list[Pair], profile: Profile, by_id: dict[str, Exemplar]) -> list[Pair]:
    """GRPO's prompt pool: the training pairs of ``profile.grpo_negative_types`` plus
    ``profile.grpo_user_swap_items`` user-swap items of training authors.

    The pre-flight keeps only the prompts whose group of samples has reward variance, so the
    pool says what GRPO *may* meet; what it trains on is what the SFT judge is unsure about.
    The user-swap items are a second draw (seed + 1) with SFT's whole draw removed (with
    ``sft_user_swap_teacher``: every candidate, kept or not), so GRPO asks about pairs of texts
    SFT never saw together: a reward there cannot come from remembering an SFT label.
    """
    kinds = profile.grpo_negative_types
    out = [p for p in train if kinds is None or p.negative_type in kinds]
    if profile.grpo_user_swap_items:
        taken = {p.meta["swap_group"] for p in drawn_items(profile, by_id)}
        drawn = user_swap_pairs(list(by_id.values()), "train", profile.grpo_user_swap_items,
                                profile.max_exemplars, profile.seed + 1)  # fmt: skip
        out += [p for p in drawn if p.meta["swap_group"] not in taken]
    if not out:
        raise DataError(
            f"profile '{profile.name}' leaves GRPO no prompts: grpo_negative_types="
            f"{kinds!r} matches none of the {len(train)} training pairs and "
            f"grpo_user_swap_items is {profile.grpo_user_swap_items}",
            "set grpo_negative_types to None (every training pair) or ask for user-swap items.",
        )
    return out


def make_traces(train: list[Pair], by_id: dict[str, Exemplar], reasoning: str = "full"):
    """Offline traces for every training pair, in both A/B orders, as long as ``reasoning`` says.

    ``reasoning`` is the profile's field: "full" (the stylometric writer), "short" (visible cues)
    or "none" (verdict only); see :func:`persrm_utils.train.traces.reasoning_traces`.
    """

    return reasoning_traces(train, by_id, reasoning)  # type: ignore[arg-type]


def require_run(name: str, profile: Profile, stage: str) -> None:
    """Refuse a training stage on a run folder that does not exist, before anything is written.

    ``RunFolder.create`` would make the folder and its manifest, and the stage would then stop
    at its missing inputs, leaving an empty run behind under the mistyped name.
    """
    root = runs_dir()
    if (root / name / MANIFEST).is_file():
        return
    known = sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}")) if root.is_dir() else []
    listed = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "") if known else "none"
    raise MissingInputsError(
        f"run '{name}' does not exist in {root} (runs there: {listed}), and stage {stage} "
        "trains on the pairs that stages 00-02 write into a run folder. Nothing was written.",
        f"Pass the name of an existing run (--run NAME), or make this one first: `persrm run "
        f"--profile {profile.name} --run {name} --only 00_setup 01_exemplars "
        "02_synthetic_pairs`.",
    )


def _settings_note(run: RunFolder, stage: str, profile: Profile) -> str:
    """The profile fields that differ from those the finished stage was trained with, if any."""
    before = run.manifest.stages[stage].config
    now = profile.model_dump(mode="json")
    if not before:
        return ""
    changes = changed_settings(before, now)
    return f"; it ran with other settings ({changes})" if changes else ""


def begin_stage(
    stage: str,
    profile_name: str,
    run_name: str | None,
    overrides: dict[str, Any] | None,
    force: bool,
):
    """(profile, run folder, is_main), or None when the stage is done and not forced.

    Only the main process (rank 0) marks the stage as running; the other ranks only check that
    its inputs exist, so two processes never write the manifest at once. A run folder that does
    not exist is refused before anything is written.
    """

    profile = get_profile(profile_name, **(overrides or {}))
    # First thing of `persrm sft/grpo` (and of each launched process) that knows the profile:
    # unsloth, when this profile uses it, is imported before anything imports trl.
    import_backend_first(profile)
    main = rank() == 0
    require_run(run_name or profile.name, profile, stage)
    # rank 0 holds the run folder's writer lock until the stage function returns (@releases_writer)
    writer = f"persrm {'sft' if stage == SFT_STAGE else 'grpo'}" if main else None
    run = RunFolder.create(run_name or profile.name, profile.name, overrides, writer=writer)
    if main:
        if run.is_done(stage) and not force:
            note = _settings_note(run, stage, profile)
            print(
                f"{stage} is already done in {run.path}{note} (use --force to train again"
                f"{' with the new settings' if note else ''})"
            )
            return None
        run.start_stage(stage, config=profile.model_dump(mode="json"))
    else:
        run.require(stage)
    return profile, run, main


def trained_with(out_dir: Path, resumed_from: str | None) -> dict[str, Any]:
    """What the manifest records about the weights: the fingerprint in the adapter's record."""
    record = read_training_record(out_dir / ADAPTER / TRAINING_RECORD) or {}
    return {
        "fingerprint": record.get("fingerprint"),
        "resumed_from": Path(resumed_from).name if resumed_from else None,
        "settings_file": f"{out_dir.name}/{ADAPTER}/{TRAINING_RECORD}",
    }


@releases_writer
def run_sft_stage(
    profile_name: str = "smoke",
    run_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Traces -> SFT -> adapter, recorded in the run folder's manifest (rank 0 only)."""

    begun = begin_stage(SFT_STAGE, profile_name, run_name, overrides, force)
    if begun is None:
        return {"skipped": True}
    profile, run, main = begun
    train, _, by_id = load_stage_inputs(run.path)
    # with sft_user_swap_teacher the base model chooses them (cached in the run folder)
    swap, swap_report = choose_user_swap_items(profile, by_id, run.path if main else None)
    traces, stats = make_traces(sft_pairs(train, profile, by_id, swap), by_id, profile.reasoning)
    stats["user_swap_items"] = swap_report
    out_dir = run.path / "sft"
    # --force trains again from the start; otherwise only an interrupted run of the same
    # settings resumes. The traces are written once the adapter trained on them is saved.
    result = train_sft(profile, to_sft_rows(traces), out_dir, resume=not force)
    summary = {"traces": stats, "sft": asdict(result)}
    if main:
        write_jsonl(run.file("sft/traces.jsonl"), traces)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        run = RunFolder.open(run.path)
        run.finish_stage(
            SFT_STAGE,
            [out_dir / ADAPTER, out_dir / TRAIN_LOG, out_dir / "traces.jsonl",
             out_dir / "summary.json"]
            + [p for p in [run.path / CHOICE_FILE] if p.is_file()],
            training=trained_with(out_dir, result.resumed_from),
        )  # fmt: skip
        print(
            f"{SFT_STAGE}: {result.steps} steps in {result.seconds:.1f} s, loss "
            f"{result.start_loss:.3f} -> {result.end_loss:.3f}, adapter in {out_dir / ADAPTER}"
        )
    return summary


GRPO_STAGE = "04_grpo_unsloth"


@releases_writer
def run_grpo_stage(
    profile_name: str = "smoke",
    run_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """GRPO from the SFT adapter, recorded in the run folder's manifest (rank 0 only)."""

    begun = begin_stage(GRPO_STAGE, profile_name, run_name, overrides, force)
    if begun is None:
        return {"skipped": True}
    profile, run, main = begun
    train, _, by_id = load_stage_inputs(run.path)
    out_dir = run.path / "grpo"
    rewards = reward_funcs(profile.reasoning)
    check_adapter(run.path / "sft" / ADAPTER)  # a broken SFT adapter is no place to start
    policy = load_policy(profile, run.path / "sft" / ADAPTER)
    checked = preflight(
        policy, grpo_rows(grpo_pairs(train, profile, by_id), by_id, prefix=profile.answer_prefix),
        profile.grpo_num_generations,
        profile.max_completion_length, rewards, profile.grpo_preflight_prompts, profile.seed,
    )  # fmt: skip
    result = train_grpo(profile, checked.kept, out_dir, rewards, loaded=policy, resume=not force)
    if main:
        run = RunFolder.open(run.path)
        run.finish_stage(
            GRPO_STAGE,
            [out_dir / ADAPTER, out_dir / TRAIN_LOG],
            training=trained_with(out_dir, result.resumed_from),
        )
        first, last = result.first_last("reward")
        print(
            f"{GRPO_STAGE}: {result.steps} steps in {result.seconds:.1f} s, reward {first:.3f} -> "
            f"{last:.3f}, adapter in {out_dir / ADAPTER}"
        )
    return {"grpo": json.loads(json.dumps(asdict(result), default=str))}
