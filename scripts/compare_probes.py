"""Did a change of recipe move the user-swap test? Two recipe probes, paired by item.

python scripts/compare_probes.py runs/probe/us99m96 runs/probe/us99m48

Both probes must share the seed, authors, texts and k (so they judged the same user-swap items;
`scripts/probe_recipes.py` keeps each probe's verdicts in its folder). Prints x minus y with a
95% bootstrap interval over items. `--model-x` / `--model-y` pick another judge of the probe's
verdicts ("char n-grams", "visible cues"); the default is the probe's trained judge, "SFT".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from persrm_utils.bench.probe import compare_probes
from persrm_utils.errors import PersRMError
from persrm_utils.evaluate.metrics import format_user_swap_difference


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe_x", type=Path)
    parser.add_argument("probe_y", type=Path)
    parser.add_argument("--model-x", default="SFT")
    parser.add_argument("--model-y", default="SFT")
    args = parser.parse_args(argv)
    try:
        diff = compare_probes(args.probe_x, args.probe_y, args.model_x, args.model_y)
    except PersRMError as err:
        print(err, file=sys.stderr)
        return 2
    x, y = f"{args.probe_x.name} '{args.model_x}'", f"{args.probe_y.name} '{args.model_y}'"
    print(format_user_swap_difference(diff, x, y))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
