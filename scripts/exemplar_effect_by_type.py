"""Where does the exemplar help, and where does it hurt? The exemplar effect per negative type.

python scripts/exemplar_effect_by_type.py runs/cpu-long-c [--model "SFT + GRPO"]

Reads the run's `eval/predictions.jsonl` (notebook 05: the unseen pairs judged with the
exemplars and with none, "<model>, k=0") and prints, per negative type and overall, the
accuracy with and without the exemplars and the paired difference with its 95% interval.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from persrm_utils.errors import PersRMError
from persrm_utils.evaluate.personalization import exemplar_effect_by_type


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--model", default="SFT + GRPO", help="a model notebook 05 ablated at k=0")
    args = parser.parse_args(argv)
    try:
        table = exemplar_effect_by_type(args.run, args.model)
    except PersRMError as err:
        print(err, file=sys.stderr)
        return 2
    print(f"exemplar effect of {args.run.name} '{args.model}' (with minus k = 0, paired):")
    print("| negative type | pairs | with the exemplars | k = 0 | effect [95% CI] |")
    print("| --- | --- | --- | --- | --- |")
    for row in table.itertuples():
        print(
            f"| {row.negative_type} | {row.n_pairs} | {row.accuracy_k:.3f} | {row.accuracy_0:.3f} "
            f"| {row.effect:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}] |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
