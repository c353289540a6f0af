"""Which SFT recipe teaches a small judge which text its author wrote? Measure, don't guess.

    python scripts/probe_recipes.py --types cross_author minor_replace --epochs 2
    python scripts/probe_recipes.py --types style_random cross_author --think short
    python scripts/probe_recipes.py --types style_random --user-swap-train 40

Builds pairs from Reuters C50 (``PERSRM_C50_DIR``) with the `cpu` profile's model (SmolLM2-135M),
trains one LoRA SFT judge with the recipe given on the command line, and judges unseen-author
test pairs in both A/B orders with batched greedy generation, exactly as notebook 05 does. It
prints accuracy with a 95% bootstrap interval, position bias ("says A") and swap consistency,
overall and per negative type with n, and appends one JSON line per recipe to ``--log`` so the
table of recipes in RESULTS.md can be rebuilt from it.

Every figure in RESULTS.md's "recipes tried" table came from this script; each line of the log
carries its full arguments and timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--types", nargs="+", default=["cross_author", "minor_replace"])
    ap.add_argument("--test-types", nargs="+", default=None, help="default: --types")
    ap.add_argument("--think", default="none", choices=["none", "short", "full"])
    ap.add_argument(
        "--no-prefill",
        action="store_true",
        help="verdict-only: train and judge the whole answer, tags included",
    )
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--train-authors", type=int, default=30)
    ap.add_argument("--test-authors", type=int, default=12)
    ap.add_argument("--texts", type=int, default=10, help="texts per author")
    ap.add_argument("--words", type=int, default=40, help="max words per continuation")
    ap.add_argument("--k", type=int, default=1, help="max exemplars")
    ap.add_argument("--max-train-pairs", type=int, default=None)
    ap.add_argument("--max-test-pairs", type=int, default=100)
    ap.add_argument(
        "--user-swap-train",
        type=int,
        default=0,
        help="user-swap items of training authors mixed into SFT (2 users x 2 orders each)",
    )
    ap.add_argument(
        "--user-swap-test", type=int, default=100, help="unseen-author user-swap items judged"
    )
    ap.add_argument(
        "--init-adapter",
        default=None,
        help="a curriculum's second stage: merge this earlier SFT adapter into the model first",
    )
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the profile's seed: which authors are unseen, which texts pair up, the LoRA init "
        "(a second seed asks whether a figure survives another draw)",
    )
    ap.add_argument(
        "--user-swap-teacher",
        action="store_true",
        help="train only on user-swap items the untrained model's likelihood reads under both "
        "users (drawn from --user-swap-candidates, default 3x --user-swap-train)",
    )
    ap.add_argument("--user-swap-candidates", type=int, default=None)
    ap.add_argument("--gen-budget-s", type=float, default=600.0, help="LLM negatives budget")
    ap.add_argument("--out", type=Path, default=Path("runs/probe"))
    ap.add_argument("--log", type=Path, default=Path("runs/probe/recipes.jsonl"))
    ap.add_argument("--name", default=None)
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from persrm_utils.bench.probe import ProbeRecipe, run_probe

    recipe = ProbeRecipe(
        types=tuple(args.types),
        test_types=tuple(args.test_types or args.types),
        think=args.think,
        epochs=args.epochs,
        learning_rate=args.lr,
        lora_r=args.lora_r,
        batch_size=args.batch,
        n_train_authors=args.train_authors,
        n_test_authors=args.test_authors,
        texts_per_author=args.texts,
        max_output_words=args.words,
        max_exemplars=args.k,
        max_train_pairs=args.max_train_pairs,
        max_test_pairs=args.max_test_pairs,
        gen_budget_s=args.gen_budget_s,
        prefill=not args.no_prefill,
        user_swap_train=args.user_swap_train,
        user_swap_test=args.user_swap_test,
        user_swap_teacher=args.user_swap_teacher,
        user_swap_candidates=args.user_swap_candidates,
        init_adapter=args.init_adapter,
        seed=args.seed,
    )
    start = time.perf_counter()
    result = run_probe(recipe, args.out / (args.name or recipe.slug()))
    result["wall_s"] = round(time.perf_counter() - start, 1)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a") as fh:
        fh.write(json.dumps(result) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "recipe"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
