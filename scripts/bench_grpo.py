"""Benchmark: N GRPO steps through plain TRL + PEFT (+ bitsandbytes) and through Unsloth.

    python scripts/bench_grpo.py                       # CPU: the tiny model, plain path only
    python scripts/bench_grpo.py --model smollm2 --steps 3
    python scripts/bench_grpo.py --model qwen2.5-1.5b-random --steps 5 --4bit   # on a GPU

Each path runs in its own process, so peak memory is measured cleanly, with identical settings
(prompts, group size, completion length, LoRA rank). It prints seconds per step and peak memory
for each, and their ratio when both ran. ``qwen2.5-1.5b-random`` is a randomly initialised model
with Qwen2.5-1.5B's exact architecture (and the tiny model's tokenizer as a stand-in): speed and
memory do not depend on the weights' values, so it stands in for the real model on a machine that
cannot download it. The measurement is :mod:`persrm_utils.bench.mechanics`, which part 2 of
``scripts/gpu_check.py`` also runs (with SFT steps and the t4 profile's settings).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path


def _model_dir(name: str) -> str:
    from persrm_utils.bench.mechanics import random_model_dir
    from persrm_utils.paths import cache_dir

    if name == "tiny":
        from persrm_utils.models.tiny import tiny_model_dir

        return str(tiny_model_dir())
    if name == "smollm2":
        from persrm_utils.models.smollm2 import smollm2_dir

        return str(smollm2_dir())
    if name == "qwen2.5-1.5b-random":
        return str(random_model_dir(cache_dir() / "qwen2.5-1.5b-random-tinytok"))
    raise SystemExit(f"unknown model {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny | smollm2 | qwen2.5-1.5b-random")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--completion", type=int, default=64)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--4bit", dest="four_bit", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per path")
    args = parser.parse_args()

    import torch

    from persrm_utils.bench.mechanics import compare, run_backend

    overrides = dict(model_path=_model_dir(args.model), load_in_4bit=args.four_bit,
                     grpo_num_generations=args.generations, grpo_batch_size=args.generations * 2,
                     max_completion_length=args.completion, lora_r=args.lora_r,
                     lora_alpha=args.lora_r)  # fmt: skip
    paths = ["transformers"]
    if torch.cuda.is_available() and importlib.util.find_spec("unsloth"):
        paths.append("unsloth")
    else:
        print("Unsloth path skipped: it needs a CUDA GPU and the unsloth package.")
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for path in paths:
            r = run_backend("smoke", overrides, path, 0, args.steps, args.timeout, Path(work))
            if r["status"] != "ok":
                print(f"{path}: {r['status'].upper()}\n{r.get('error', '')}")
                continue
            results[path] = r
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(
        f"\nGRPO benchmark: model={args.model} 4bit={args.four_bit} steps={args.steps} "
        f"G={args.generations} completion={args.completion} lora_r={args.lora_r} on {device}"
    )
    for path, r in results.items():
        grpo = r["grpo"]
        vram = grpo.get("peak_vram_reserved_gib")
        mem = f"{vram:.2f} GiB VRAM reserved" if vram is not None else "no GPU"
        print(f"  {path:12} {grpo['s_per_step']:7.2f} s/step  peak {grpo['peak_rss_gib']:.2f} "
              f"GiB RAM, {mem}")  # fmt: skip
    for key, value in compare(results).items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
