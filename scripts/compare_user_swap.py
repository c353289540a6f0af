"""Did a change of recipe move the user-swap test? Two runs of the same data, paired by item.

python scripts/compare_user_swap.py runs/cpu-long-a "SFT + GRPO" runs/cpu-f "SFT + GRPO"

Both runs must share the data (corpus, authors, texts, k, seed: two profiles that differ only
in training, like `cpu` and `cpu-long`), so notebook 05 judged the same user-swap items. Prints
x minus y with a 95% bootstrap interval over items; the model names are those of the run's
`eval/personalization.json` (for example "SFT", "SFT + GRPO", "stylometric (char n-grams)").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from persrm_utils.errors import PersRMError
from persrm_utils.evaluate.metrics import format_user_swap_difference
from persrm_utils.evaluate.personalization import compare_user_swap
from persrm_utils.use.persrm import run_profile


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_x", type=Path)
    parser.add_argument("model_x")
    parser.add_argument("run_y", type=Path)
    parser.add_argument("model_y")
    args = parser.parse_args(argv)
    try:
        diff = compare_user_swap(
            args.run_x, args.model_x, args.run_y, args.model_y, run_profile(args.run_x)
        )
    except PersRMError as err:
        print(err, file=sys.stderr)
        return 2
    x, y = f"{args.run_x.name} '{args.model_x}'", f"{args.run_y.name} '{args.model_y}'"
    print(format_user_swap_difference(diff, x, y))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
