"""Benchmark: judging throughput, batched vs one pair at a time, same model, same pairs.

    python scripts/bench_judging.py                         # tiny model, seed pairs
    python scripts/bench_judging.py --profile cpu --pairs 16 --batch 8

Greedy decoding in both runs, so the verdicts must be identical; the script checks that and
prints pairs per second for each and their ratio. Batching pays because a decoder spends most of
each step moving weights, which one batch shares across all its rows.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    import tempfile
    from pathlib import Path

    from persrm_utils.exemplars import collect
    from persrm_utils.gencache import CachedGenerator
    from persrm_utils.judging import judge_pairs
    from persrm_utils.models import load_model
    from persrm_utils.pairs import make_pairs, offline_backend, plan_pairs
    from persrm_utils.profiles import get_profile

    profile = get_profile(args.profile)
    exemplars = collect(profile)
    planned = plan_pairs(exemplars, profile.max_exemplars, profile.seed)
    by_id = {e.text_id: e for e in exemplars}
    with tempfile.TemporaryDirectory() as tmp:
        gen = CachedGenerator(offline_backend(planned, by_id), Path(tmp) / "cache.jsonl")
        made = make_pairs(planned, exemplars, gen, profile.max_output_words,
                          profile.minor_replace_writer, progress=False)  # fmt: skip
    pairs = [p for ps in made.pairs.values() for p in ps][: args.pairs]
    loaded = load_model(profile)
    print(loaded.describe())
    figures = {}
    verdicts = {}
    for batch in (1, args.batch):
        start = time.perf_counter()
        js = judge_pairs(loaded.model, loaded.tokenizer, pairs, by_id, args.max_new_tokens,
                         model_name=f"bench-{batch}", batch_size=batch)  # fmt: skip
        figures[batch] = len(pairs) / (time.perf_counter() - start)
        verdicts[batch] = [j.completion for j in js]
    same = verdicts[1] == verdicts[args.batch]
    print(f"\nJudging throughput, profile {args.profile}, {len(pairs)} pairs, "
          f"{args.max_new_tokens} new tokens, greedy:")  # fmt: skip
    print(f"  one pair at a time : {figures[1]:.2f} pairs/s")
    print(f"  batched ({args.batch:2d})       : {figures[args.batch]:.2f} pairs/s")
    print(f"  speed-up           : {figures[args.batch] / figures[1]:.2f}x")
    print(f"  identical outputs  : {same}")


if __name__ == "__main__":
    main()
