"""How much of the person is in the texts? Character n-grams on the user-swap test, by length and k.

PERSRM_C50_DIR=<C50> python scripts/signal_by_length.py --words 30 60 120 250 --k 1 2 3

Uses the `cpu` profile's authors and seed (or --profile; --val-authors 0 gives the recipe
probes' unseen authors), cutting texts and exemplars to each length. Seconds per cell, no
model: run it before a probe of longer texts or more exemplars.

--model adds the profile's language model, untrained: how much its exemplars raise each text's
likelihood (evaluate.likelihood). Minutes per cell on CPU (SmolLM2 for `cpu`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--words", type=int, nargs="+", default=[30, 60, 120, 250])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--items", type=int, default=100, help="user-swap items per cell")
    parser.add_argument("--val-authors", type=int, default=None,
                        help="0: the recipe probes' unseen authors")  # fmt: skip
    parser.add_argument(
        "--model", action="store_true", help="add the base model's likelihood baseline (minutes)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON line per cell")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from persrm_utils.errors import PersRMError
    from persrm_utils.evaluate.likelihood import LIKELIHOOD_NAME
    from persrm_utils.evaluate.signal import signal_grid
    from persrm_utils.profiles import get_profile

    try:
        overrides = {} if args.val_authors is None else {"n_val_authors": args.val_authors}
        profile = get_profile(args.profile, **overrides)
        lm = None
        if args.model:
            from persrm_utils.models.loader import load_model

            loaded = load_model(profile)
            lm = (loaded.model, loaded.tokenizer)
        rows = signal_grid(profile, args.words, args.k, args.items, lm=lm)
    except PersRMError as err:
        print(err, file=sys.stderr)
        return 2
    for r in rows:
        if args.json:
            print(json.dumps(r))
            continue
        n, c = r["char n-grams"], r["visible cues"]
        print(f"words {r['words']:4d}  k {r['k']}  items {r['n_items']:4d}  char n-grams "
              f"{n['accuracy']:.3f} [{n['ci_low']:.3f}, {n['ci_high']:.3f}] (both right "
              f"{n['both_right']:.2f})  visible cues {c['accuracy']:.3f}", end="")  # fmt: skip
        if LIKELIHOOD_NAME in r:
            m = r[LIKELIHOOD_NAME]
            print(f"  {LIKELIHOOD_NAME} {m['accuracy']:.3f} [{m['ci_low']:.3f}, "
                  f"{m['ci_high']:.3f}] (both right {m['both_right']:.2f})", end="")  # fmt: skip
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
