"""Prove the GPU path in one command, offline, in under 10 minutes: writes gpu_check/.

    python scripts/gpu_check.py                         # on one GPU: every part, under 10 minutes
    python scripts/gpu_check.py --smollm2 SmolLM2-135M-Instruct.Q4_1.gguf --c50 C50/
    python scripts/gpu_check.py --dry-run --out /tmp/check   # any CPU: every part, one step each

Parts (each in its own process, under its own time cap, figures kept if it fails or times out):
environment; the t4 recipe's SFT and GRPO steps through Unsloth and plain TRL + PEFT on a random
Qwen2.5-1.5B-architecture model in 4-bit; a learning run of SmolLM2 on Reuters C50 with the cpu
recipe scaled up (accuracy before SFT, after SFT, after GRPO); batched versus one-at-a-time
judging. Writes gpu_check.json and gpu_check.md into --out after every part. Exits 0 whenever the
check itself ran, whatever the parts' status; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: The learning run: the ``cpu`` profile asked for more, plus one lever: the user-swap items
#: the untrained model reads, the recipe that read the person best on CPU (probe us99m192t:
#: 192 items of 396 candidates, user-swap 0.695 [0.653, 0.740] on 2 cores), so the first GPU
#: run measures it at scale. 20 texts per author give about 226 unseen-author test pairs on C50.
SCALE_UP = {
    "n_train_authors": 30,  # the cpu profile trains on 9 authors: a GPU affords all of them
    "texts_per_author": 24,  # 12 unseen authors x 24 texts: over 200 test pairs after filters
    "sft_epochs": 2.0,
    "grpo_max_steps": 30,
    "grpo_preflight_prompts": 96,
    "eval_max_pairs": None,  # judge every unseen-author pair
    "sft_user_swap_items": 192,  # mixed into SFT; lower if SFT runs past its cap
    "sft_user_swap_teacher": True,  # keep only items the untrained model reads under both users
    "sft_user_swap_candidates": 480,  # the teacher scores these (fewer when the texts run out)
    # notebook 05's cross-author set: on 2 cores 960 verdicts took 404 s (run cpu-long-d);
    # lower if the learning part runs past its cap
    "eval_cross_author_pairs": 120,
}


def _import_package() -> None:
    """Make ``persrm_utils`` importable from a checkout that was never pip-installed."""
    try:
        import persrm_utils  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _caps(items: list[str], parser: argparse.ArgumentParser) -> dict[str, float]:
    from persrm_utils.bench.check_options import DEFAULT_CAPS

    caps = dict(DEFAULT_CAPS)
    for item in items:
        name, _, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if name not in caps or seconds <= 0:
            parser.error(f"--cap {item!r}: write PART=SECONDS with PART in {', '.join(caps)}")
        caps[name] = seconds
    return caps


def main(argv: list[str] | None = None) -> int:
    _import_package()
    from persrm_utils.bench.check_options import PARTS, CheckOptions
    from persrm_utils.bench.gpu_check import run_check

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check", help="output folder (default gpu_check/)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, one step each")
    parser.add_argument("--smollm2", help="SmolLM2 weights: its .gguf file or a converted folder")
    parser.add_argument("--c50", help="Reuters C50 folder (C50train/, C50test/)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset")
    parser.add_argument("--cap", action="append", default=[], metavar="PART=SECONDS",
                        help="a part's time cap (repeatable)")  # fmt: skip
    parser.add_argument("--eval-batch", type=int, default=32, help="judging batch, learning run")
    parser.add_argument("--fail-part", choices=PARTS, help=argparse.SUPPRESS)  # tests only
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        parser.error(f"--parts: unknown {', '.join(unknown) or '(empty)'}; use {', '.join(PARTS)}")
    if args.eval_batch < 1:
        parser.error("--eval-batch must be at least 1")
    opts = CheckOptions(out=args.out, dry_run=args.dry_run, parts=parts,
                        caps=_caps(args.cap, parser), smollm2=args.smollm2, c50=args.c50,
                        scale=dict(SCALE_UP), eval_batch=args.eval_batch,
                        fail_part=args.fail_part)  # fmt: skip
    report = run_check(opts)
    print(f"GPU check written to {Path(args.out) / 'gpu_check.md'} and gpu_check.json:")
    for name, part in report["parts"].items():
        why = part.get("error") or part.get("reason") or ""
        print(f"  {name:12} {part['status']:8} {part.get('seconds', 0):7.1f} s  {why[:100]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
