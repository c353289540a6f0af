"""Parts 1, 2 and 4 of the GPU check (part 3 is :mod:`persrm_utils.bench.learning_check`).

Every part takes the options, a :class:`~persrm_utils.bench.check_options.Recorder` to write
figures to as soon as they exist, and its :class:`~persrm_utils.bench.timebox.Deadline`. A part
that cannot run here (no CUDA, no weights) records ``skipped`` with the reason and what would make
it run.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persrm_utils.bench.check_options import INSTALL_HINT, UNSLOTH_SHARE
from persrm_utils.bench.judging_speed import throughput
from persrm_utils.bench.mechanics import BACKENDS, build_in_child, child_env, compare, run_backend
from persrm_utils.bench.timebox import Deadline, run_capped
from persrm_utils.data.offline import offline_pairs
from persrm_utils.hardware import choose_dtype_name, detect
from persrm_utils.models.loader import load_model
from persrm_utils.models.smollm2 import find_smollm2
from persrm_utils.models.tiny import seed_texts, tiny_model_dir
from persrm_utils.profiles import get_profile
from persrm_utils.run.folders import package_versions
from persrm_utils.setup.import_check import missing_modules

if TYPE_CHECKING:
    from persrm_utils.bench.check_options import CheckOptions, Recorder


# --- shared resolution of the inputs that may be missing on a GPU machine ------------------


# --- part 1 ------------------------------------------------------------------------------


def _unsloth_import(deadline: Deadline) -> dict[str, Any]:
    """Import unsloth in a child process: importing it patches libraries, and it may hang."""

    if importlib.util.find_spec("unsloth") is None:
        return {"importable": False, "detail": f"not installed: {INSTALL_HINT}"}
    gone = missing_modules()
    if gone:  # name them, instead of the last line of a traceback from deep inside unsloth
        return {"importable": False, "detail": f"{', '.join(gone)} missing: {INSTALL_HINT}"}
    code = "import unsloth, sys; print('UNSLOTH', unsloth.__version__)"
    run = run_capped([sys.executable, "-c", code], max(5.0, deadline.left()), env=child_env())
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("UNSLOTH ")), None)
    if line:
        return {"importable": True, "detail": line.split(" ", 1)[1], "import_s": run.seconds}
    why = "timed out" if run.timed_out else (run.stderr.strip().splitlines() or ["?"])[-1]
    return {"importable": False, "detail": why[:500]}


def environment_part(opts: CheckOptions, rec: Recorder, deadline: Deadline) -> None:
    """GPU name, compute capability, dtype, versions, and whether Unsloth imports."""

    import torch

    hw = detect()
    cap = hw.compute_capability
    rec.figures.update(
        gpu_name=hw.gpu_name or "no GPU",
        vram_gib=hw.vram_gb,
        compute_capability=f"{cap[0]}.{cap[1]}" if cap else None,
        dtype=choose_dtype_name(cap if hw.cuda else None),
        bf16_native=hw.bf16,
        cuda=hw.cuda,
        cuda_runtime=torch.version.cuda,
        python=hw.python,
        platform=hw.platform,
        cpu_count=hw.cpu_count,
        ram_gb=hw.ram_gb,
    )
    versions = package_versions()
    for extra in ("triton", "peft", "cut_cross_entropy", "pydantic"):
        try:
            versions[extra] = metadata.version(extra)
        except metadata.PackageNotFoundError:
            continue
    rec.set("versions", dict(sorted(versions.items())))
    rec.set("unsloth", _unsloth_import(deadline))


# --- part 2 ------------------------------------------------------------------------------


def backend_seconds(left: float, todo: list[str]) -> float:
    """The time for ``todo[0]`` out of ``left``: Unsloth's share is larger while plain TRL still
    waits, because it also pays a cold import and the compile of its first GRPO step."""
    if len(todo) == 1:
        return left
    return left * (UNSLOTH_SHARE if todo[0] == "unsloth" else 1.0 / len(todo))


def mechanics_part(opts: CheckOptions, rec: Recorder, deadline: Deadline) -> None:
    """The ``t4`` recipe's SFT and GRPO steps, Unsloth versus plain, each in its own process."""
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not opts.dry_run:
        rec.skip("no CUDA GPU: 4-bit loading and Unsloth need one (use --dry-run on a CPU)")
        return
    sft_steps, grpo_steps = (1, 1) if opts.dry_run else opts.mechanics_steps
    tmp = Path(tempfile.mkdtemp(prefix="persrm-mechanics-"))
    try:
        if opts.dry_run:
            model_dir = tiny_model_dir(texts=seed_texts())
            # One step of each trainer at toy lengths: the plumbing, not the t4 figures.
            overrides: dict[str, Any] = dict(
                model_path=str(model_dir), load_in_4bit=False, max_seq_length=256,
                max_completion_length=16, sft_batch_size=1, sft_grad_accum=1,
                grpo_batch_size=2, grpo_num_generations=2,
            )  # fmt: skip
            rec.note("dry run: the tiny model, unquantized, on a CPU, at toy lengths")
        else:
            model_dir = build_in_child(tmp / "qwen2.5-1.5b-random", deadline.left() / 4)
            overrides = {"model_path": str(model_dir)}
            rec.note(
                "model: random weights in Qwen2.5-1.5B's exact architecture, loaded in 4-bit; "
                "time and memory do not depend on the weights' values. The tokenizer is the "
                "tiny model's, a stand-in: prompts are filled to the t4 profile's token lengths "
                "with it, and random weights never stop early, so every completion runs to "
                "max_completion_length (the worst case for memory)."
            )

        t4 = get_profile("t4", **overrides)
        rec.set("settings", {k: getattr(t4, k) for k in (
            "max_seq_length", "max_completion_length", "lora_r", "sft_batch_size",
            "sft_grad_accum", "grpo_batch_size", "grpo_num_generations", "load_in_4bit",
        )} | {"sft_steps": sft_steps, "grpo_steps": grpo_steps})  # fmt: skip
        results: dict[str, Any] = {}
        todo = list(BACKENDS)  # Unsloth first: the headline, if time runs short
        for i, backend in enumerate(todo):
            if backend == "unsloth" and not cuda:
                results[backend] = {"status": "skipped", "reason": "needs CUDA"}
            elif backend == "unsloth" and importlib.util.find_spec("unsloth") is None:
                results[backend] = {"status": "skipped", "reason": INSTALL_HINT}
            else:
                seconds = backend_seconds(deadline.left(), todo[i:])
                work = Path(opts.out) / "work" / "mechanics"
                results[backend] = run_backend(
                    "t4", overrides, backend, sft_steps, grpo_steps, seconds, work
                )
            rec.set("backends", results)
        rec.set("comparison", compare(results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- part 4 ------------------------------------------------------------------------------


def judging_part(opts: CheckOptions, rec: Recorder, deadline: Deadline) -> None:
    """Batched versus one-at-a-time judging: SmolLM2 when its weights are here, else tiny."""

    n_pairs, batch, tokens = (4, 4, 16) if opts.dry_run else opts.judging
    smoke = get_profile("smoke")
    profile = smoke
    if not opts.dry_run:
        path, how = find_smollm2(opts.smollm2)
        if path is None:
            rec.note(f"measured with the tiny model instead of SmolLM2: {how}")
        else:
            profile = get_profile("cpu", model_path=path, backend="transformers")
    data = offline_pairs(smoke)  # the built-in seed texts: always here, no C50 needed
    pairs = [p for ps in data.pairs.values() for p in ps][:n_pairs]
    loaded = load_model(profile)
    rec.set("model", f"{profile.name}: {profile.model_name} ({loaded.backend}, {loaded.dtype})")
    rec.note("pairs from the built-in seed texts; greedy decoding in both runs")
    rec.figures.update(throughput(loaded, pairs, data.by_id, batch, tokens))
    rec.flush()
