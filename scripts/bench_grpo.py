"""Benchmark: N GRPO steps through plain TRL + PEFT (+ bitsandbytes) and through Unsloth.

    python scripts/bench_grpo.py                       # CPU: the tiny model, plain path only
    python scripts/bench_grpo.py --model smollm2 --steps 3
    python scripts/bench_grpo.py --model qwen2.5-1.5b-random --steps 5 --4bit   # on a GPU

Each path runs in its own process, so peak memory is measured cleanly, with identical settings
(prompts, group size, completion length, LoRA rank). It prints seconds per step and peak memory
for each, and their ratio when both ran. ``qwen2.5-1.5b-random`` is a randomly initialised model
with Qwen2.5-1.5B's exact architecture: speed and memory do not depend on the weights' values,
so it stands in for the real model on a machine that cannot download it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def _model_dir(name: str) -> str:
    from persrm_utils.paths import cache_dir

    if name == "tiny":
        from persrm_utils.tiny import tiny_model_dir

        return str(tiny_model_dir())
    if name == "smollm2":
        from persrm_utils.smollm2 import smollm2_dir

        return str(smollm2_dir())
    if name == "qwen2.5-1.5b-random":
        target = cache_dir() / "qwen2.5-1.5b-random"
        if not (target / "config.json").exists():
            import torch
            from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

            from persrm_utils.smollm2 import smollm2_dir

            tok = AutoTokenizer.from_pretrained(smollm2_dir())  # a ChatML tokenizer
            cfg = Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                              num_attention_heads=12, num_key_value_heads=2,
                              vocab_size=151936, max_position_embeddings=32768,
                              tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                              eos_token_id=tok.eos_token_id)  # fmt: skip
            model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
            model.save_pretrained(target)
            tok.save_pretrained(target)
        return str(target)
    raise SystemExit(f"unknown model {name}")


def worker(args: argparse.Namespace) -> None:
    """One path, in this process; prints a JSON line with the figures."""
    if args.path == "unsloth":
        import unsloth  # noqa: F401  (must come before trl/transformers)
    import resource

    import torch

    from persrm_utils.grpo import train_grpo
    from persrm_utils.profiles import get_profile
    from persrm_utils.rewards import REWARD_FUNCS

    profile = get_profile(
        "smoke",
        model_path=args.model_dir,
        load_in_4bit=args.four_bit,
        backend="unsloth" if args.path == "unsloth" else "transformers",
        grpo_num_generations=args.generations,
        grpo_batch_size=args.generations * 2,
        max_completion_length=args.completion,
        lora_r=args.lora_r,
        lora_alpha=args.lora_r,
        grpo_max_steps=args.steps,
    )
    question = "Which response would this user prefer? " * 20
    prompt = [
        {"role": "system", "content": "You are a personalized reward model."},
        {"role": "user", "content": question},
    ]
    rows = [{"prompt": prompt, "label": "A" if i % 2 else "B"} for i in range(64)]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        result = train_grpo(profile, rows, __import__("pathlib").Path(out), REWARD_FUNCS,
                            resume=False, save_steps=10_000)  # fmt: skip
    steps = [h.get("step_time") for h in result.history if h.get("step_time")]
    warm = steps[1:] or steps
    figures = {
        "path": args.path,
        "backend": result.backend,
        "steps": result.steps,
        "s_per_step": sum(warm) / len(warm) if warm else result.seconds / max(1, result.steps),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "peak_vram_gb": torch.cuda.max_memory_allocated() / 1024**3
        if torch.cuda.is_available()
        else None,
    }
    print("BENCH " + json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny | smollm2 | qwen2.5-1.5b-random")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--completion", type=int, default=64)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--4bit", dest="four_bit", action="store_true")
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.path:
        return worker(args)

    import importlib.util

    import torch

    model_dir = _model_dir(args.model)
    paths = ["transformers"]
    if torch.cuda.is_available() and importlib.util.find_spec("unsloth"):
        paths.append("unsloth")
    else:
        print("Unsloth path skipped: it needs a CUDA GPU and the unsloth package.")
    results = {}
    for path in paths:
        cmd = [sys.executable, __file__, "--path", path, "--model-dir", model_dir,
               "--steps", str(args.steps), "--generations", str(args.generations),
               "--completion", str(args.completion), "--lora-r", str(args.lora_r)]  # fmt: skip
        if args.four_bit:
            cmd.append("--4bit")
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
        if proc.returncode or line is None:
            print(f"{path}: FAILED (exit {proc.returncode})\n{proc.stderr[-2000:]}")
            continue
        results[path] = json.loads(line[6:]) | {"wall_s": time.perf_counter() - start}
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(
        f"\nGRPO benchmark: model={args.model} 4bit={args.four_bit} steps={args.steps} "
        f"G={args.generations} completion={args.completion} lora_r={args.lora_r} on {device}"
    )
    for path, r in results.items():
        vram = f"{r['peak_vram_gb']:.2f} GB VRAM" if r["peak_vram_gb"] is not None else "no GPU"
        ram = f"{r['peak_rss_gb']:.2f} GB RAM"
        print(f"  {path:12} {r['s_per_step']:7.2f} s/step  peak {ram}, {vram}")
    if len(results) == 2:
        plain, fast = results["transformers"], results["unsloth"]
        print(f"  unsloth speed-up: {plain['s_per_step'] / fast['s_per_step']:.2f}x")
        if plain["peak_vram_gb"] and fast["peak_vram_gb"]:
            print(f"  unsloth memory: {fast['peak_vram_gb'] / plain['peak_vram_gb']:.2f}x of plain")


if __name__ == "__main__":
    main()
