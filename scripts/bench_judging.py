"""Benchmark: judging throughput, batched vs one pair at a time, same model, same pairs.

    python scripts/bench_judging.py                         # tiny model, seed pairs
    python scripts/bench_judging.py --profile cpu --pairs 16 --batch 8

Greedy decoding in both runs, so the verdicts must be identical; the script checks that and
prints pairs per second for each and their ratio. Batching pays because a decoder spends most of
each step moving weights, which one batch shares across all its rows. The measurement itself is
:func:`persrm_utils.bench.judging_speed.throughput`, which ``scripts/gpu_check.py`` also runs.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    from persrm_utils.bench.judging_speed import throughput
    from persrm_utils.data.offline import offline_pairs
    from persrm_utils.models.loader import load_model
    from persrm_utils.profiles import get_profile

    profile = get_profile(args.profile)
    data = offline_pairs(profile)
    pairs = [p for ps in data.pairs.values() for p in ps][: args.pairs]
    loaded = load_model(profile)
    print(loaded.describe())
    r = throughput(loaded, pairs, data.by_id, args.batch, args.max_new_tokens)
    print(f"\nJudging throughput, profile {args.profile}, {r['pairs']} pairs, "
          f"{args.max_new_tokens} new tokens, greedy:")  # fmt: skip
    print(f"  one pair at a time : {r['one_at_a_time_pairs_per_s']:.2f} pairs/s")
    print(f"  batched ({args.batch:2d})       : {r['batched_pairs_per_s']:.2f} pairs/s")
    print(f"  speed-up           : {r['speedup']:.2f}x")
    print(f"  identical outputs  : {r['identical_completions']}")


if __name__ == "__main__":
    main()
