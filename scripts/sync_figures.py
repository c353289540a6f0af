"""Measured figures from one source: run records -> notebook headers, README, teacher's guide.

python scripts/sync_figures.py                       # rewrite the generated blocks from the records
python scripts/sync_figures.py --check               # only report; exit 1 when one disagrees
python scripts/sync_figures.py --record runs/smoke   # write docs/results/<profile>/timings.json
    [--peak-ram 00_setup=0.6 ...] [--series-peak-ram 0.7] [--note TEXT]
python scripts/sync_figures.py --reference runs/smoke  # publish the executed notebooks
                                                       # to docs/reference/<profile>/
python scripts/sync_figures.py --results runs/cpu-b  # write docs/results/<profile>/results.json
    [--keep-reading]                                 # from the run's files, copy its RESULTS.md
                                                     # to run-<name>.md; --keep-reading carries
                                                     # the earlier record's "reading" over

See persrm_utils.run.figures for what each block holds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from persrm_utils.errors import PersRMError
from persrm_utils.run import figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report differences")
    parser.add_argument("--record", type=Path, help="run folder to write a timings record from")
    parser.add_argument("--reference", type=Path, help="run folder whose notebooks to publish")
    parser.add_argument("--results", type=Path, help="run folder to write a results record from")
    parser.add_argument(
        "--keep-reading",
        action="store_true",
        help="with --results: keep the earlier record's 'reading' paragraphs (re-read them!)",
    )
    parser.add_argument("--peak-ram", nargs="*", default=[], help="STAGE=GB, measured outside")
    parser.add_argument("--series-peak-ram", type=float, help="GB for the whole series")
    parser.add_argument("--command", help="the command that made the run (for the record)")
    parser.add_argument("--note", default="", help="a sentence for the record")
    args = parser.parse_args(argv)
    if args.record:
        peak = {k: float(v) for k, v in (item.split("=", 1) for item in args.peak_ram)}
        record = figures.record_from_run(
            args.record, peak, args.series_peak_ram, args.command, args.note
        )
        print(f"wrote {figures.write_record(record)}")
    if args.keep_reading and not args.results:
        parser.error("--keep-reading goes with --results RUN_FOLDER")
    if args.results:
        try:
            dest, page, kept = figures.write_results_from_run(
                args.results, keep_reading=args.keep_reading
            )
        except PersRMError as err:
            print(err, file=sys.stderr)
            return 2
        print(f"wrote {dest} and {page}")
        if kept is not None:
            print(
                f"kept the 'reading' paragraphs of the earlier record (run `{kept.get('run')}`): "
                "they describe that run, not this one. Re-read each against the new figures and "
                f"rewrite what no longer holds in {dest}, then run this script again."
            )
    if args.reference:
        written = figures.publish_reference(args.reference)
        print(f"published {len(written)} executed notebooks from {args.reference}")
    problems = figures.sync(check=args.check)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
