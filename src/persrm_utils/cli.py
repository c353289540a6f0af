"""The ``persrm`` command: the notebooks' logic, runnable from a shell.

    persrm doctor                         # is this machine ready? which profile?
    persrm run --profile smoke            # execute the whole series into runs/smoke
    persrm run --profile cpu --from 03    # resume from a stage
    persrm run --only 00_setup --set sft_max_steps=2
    persrm run --run smoke --solutions    # also run the exercises' solutions notebooks
    persrm sft --profile smoke --run r1   # stage 03 alone (also under torchrun/accelerate)
    persrm grpo --profile smoke --run r1  # stage 04 alone

Errors the user can fix are printed as one paragraph, without a traceback, with exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from persrm_utils.errors import PersRMError
from persrm_utils.profiles import PROFILE_NAMES, parse_overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="persrm", description="PersRM-R1 tutorial series: personalized reward models."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check the environment and recommend a profile")
    run = sub.add_parser("run", help="execute the notebooks in order into a run folder")
    run.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILE_NAMES)}")
    run.add_argument(
        "--run", "--run-name", dest="run_name", help="run folder name (default: the profile)"
    )
    run.add_argument("--from", dest="from_stage", help="start at this stage (e.g. 03)")
    run.add_argument("--only", nargs="+", help="run only these stages")
    run.add_argument("--force", action="store_true", help="rerun stages already done")
    run.add_argument(
        "--solutions",
        action="store_true",
        help="then run the solutions notebooks of these stages (they only read the run folder)",
    )
    run.add_argument(
        "--set", dest="overrides", action="append", metavar="FIELD=VALUE",
        help="override a profile field (repeatable), e.g. --set sft_max_steps=10",
    )  # fmt: skip
    run.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    for name, stage in (("sft", "03"), ("grpo", "04")):
        cmd = sub.add_parser(name, help=f"stage {stage} outside the notebook (torchrun/accelerate)")
        cmd.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILE_NAMES)}")
        # --run-name: torchrun's parser rejects "--run" as an abbreviation of its --run-path
        cmd.add_argument("--run", "--run-name", dest="run_name", help="run folder name")
        cmd.add_argument("--force", action="store_true", help="train again even if done")
        cmd.add_argument("--set", dest="overrides", action="append", metavar="FIELD=VALUE")
    run.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    return parser


def _mark_failed(args: argparse.Namespace, stage: str, err: PersRMError) -> None:
    """Record a stage that was started and then raised as failed, so nothing reads it as done."""
    from persrm_utils.paths import runs_dir
    from persrm_utils.runs import MANIFEST, RunFolder
    from persrm_utils.sft_stage import rank

    if rank() != 0:  # under torchrun, rank 0 alone writes the manifest
        return
    folder = runs_dir() / (args.run_name or args.profile.strip().lower())
    if not (folder / MANIFEST).is_file():
        return
    run = RunFolder.open(folder)
    if run.status(stage) == "running":
        run.fail_stage(stage, str(err))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "doctor":
            from persrm_utils.doctor import render, run_checks

            report = run_checks()
            print(render(report))
            return 0 if report.ok else 1
        if args.command == "run":
            from persrm_utils.runner import run_series

            run_series(
                profile=args.profile,
                run_name=args.run_name,
                overrides=parse_overrides(args.overrides),
                from_stage=args.from_stage,
                only=args.only,
                force=args.force,
                kernel_name=args.kernel,
                progress=not args.no_progress,
                solutions=args.solutions,
            )
            return 0
        if args.command in ("sft", "grpo"):
            from persrm_utils.grpo_stage import run_grpo_stage
            from persrm_utils.sft_stage import run_sft_stage

            stage = run_sft_stage if args.command == "sft" else run_grpo_stage
            try:
                stage(args.profile, args.run_name, parse_overrides(args.overrides), args.force)
            except PersRMError as err:
                _mark_failed(args, "03" if args.command == "sft" else "04", err)
                raise
            return 0
    except PersRMError as err:
        print(f"\npersrm: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
