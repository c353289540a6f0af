"""Which GRPO prompt pool teaches the judge to read the person? Measure it on a finished run.

python scripts/probe_grpo.py runs/cpu-long-a --name us48only \
    --set grpo_user_swap_items=48 --set 'grpo_negative_types=[]' --set grpo_max_steps=16

GRPO starts from the run's SFT adapter with the profile fields given by --set (JSON values;
only training fields, so the run's user-swap items and cross_author pairs stay the ones it
judged), then judges those items. The run must have finished notebook 05 with its SFT judge on
the user-swap test (a profile with eval_user_swap_sft, such as cpu-long). One JSON line is
appended to --log: pre-flight, rewards, user-swap accuracy with paired differences against the
run's SFT and SFT + GRPO judges, cross_author accuracy and exemplar effect, and time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from persrm_utils.bench.grpo_probe import run_grpo_probe
from persrm_utils.errors import ConfigError, PersRMError


def field(text: str) -> tuple[str, object]:
    """``key=value`` with a JSON value (a bare word is a string)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: write FIELD=VALUE, e.g. grpo_max_steps=16")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key, tuple(parsed) if isinstance(parsed, list) else parsed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder (notebooks 00-05)")
    parser.add_argument("--name", required=True, help="the probe's name (its folder and row)")
    parser.add_argument("--set", type=field, action="append", default=[], dest="changed")
    parser.add_argument("--out", type=Path, default=Path("runs/probe/grpo"))
    parser.add_argument("--log", type=Path, default=Path("runs/probe/grpo.jsonl"))
    args = parser.parse_args(argv)
    changed = dict(args.changed)
    try:
        if not all(k.startswith("grpo_") for k in changed):
            raise ConfigError(
                f"--set {', '.join(k for k in changed if not k.startswith('grpo_'))}",
                "change only GRPO fields (grpo_*): other fields change the data or the SFT "
                "judge, and the run's items would no longer be this probe's.",
            )
        result = run_grpo_probe(args.run, args.name, changed, args.out)
    except PersRMError as err:
        print(err, file=sys.stderr)
        return 2
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
