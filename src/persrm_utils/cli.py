"""The ``persrm`` command: the notebooks' logic, runnable from a shell.

    persrm doctor                         # is this machine ready? which profile?
    persrm run --profile smoke            # execute the whole series into runs/smoke
    persrm run --profile cpu --from 03    # resume from a stage
    persrm run --only 00_setup --set sft_max_steps=2
    persrm run --run smoke --solutions    # also run the exercises' solutions notebooks
    persrm sft --profile smoke --run r1   # stage 03 alone (also under torchrun/accelerate)
    persrm grpo --profile smoke --run r1  # stage 04 alone
    persrm judge --run r1 --exemplars mine.jsonl --a a.txt --b "or the text itself"
    persrm judge --run r1 --exemplars mine.jsonl --batch pairs.jsonl --out verdicts.jsonl
    persrm export --run r1 --out exported/r1   # merged, standalone model folder + model card

Errors the user can fix are printed as one paragraph, without a traceback, with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from persrm_utils.errors import ConfigError, PersRMError, RunBusyError
from persrm_utils.paths import runs_dir
from persrm_utils.profiles import PROFILE_NAMES, parse_overrides
from persrm_utils.run.folders import MANIFEST, RunFolder
from persrm_utils.run.runner import run_series
from persrm_utils.setup.doctor import render, run_checks
from persrm_utils.train.commands import rank, run_grpo_stage, run_sft_stage
from persrm_utils.use.export import export_run
from persrm_utils.use.persrm import (
    PersRM,
    batch_cache_path,
    check_writable,
    pair_fields,
    read_batch,
    read_exemplars_file,
    text_or_file,
    write_batch,
)


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
    judge = sub.add_parser("judge", help="ask a trained judge which of two texts a user prefers")
    source = judge.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", "--run-name", dest="run_name", help="a trained run (name/path)")
    source.add_argument("--model", help="a folder written by `persrm export`")
    judge.add_argument("--adapter", default="auto", choices=("auto", "grpo", "sft"),
                       help="auto: GRPO's adapter when the run has one, else SFT's")  # fmt: skip
    judge.add_argument("--exemplars", metavar="FILE",
                       help="the user's texts: JSONL, one {\"text\": ...} per line")  # fmt: skip
    judge.add_argument("--prompt", default=None, help="the prompt both texts answer (text or file)")
    judge.add_argument("--a", help="response A: the text, or a file holding it")
    judge.add_argument("--b", help="response B: the text, or a file holding it")
    judge.add_argument("--batch", metavar="IN.jsonl", help='pairs, one {"a", "b"} per line')
    judge.add_argument("--out", metavar="OUT.jsonl", help="where --batch writes its verdicts")
    judge.add_argument("--batch-size", type=int, default=8, help="pairs generated at once")
    judge.add_argument("--json", action="store_true", help="print the result as JSON")
    export = sub.add_parser("export", help="merge a run's adapter into a standalone model folder")
    export.add_argument("--run", "--run-name", dest="run_name", required=True)
    export.add_argument("--out", required=True, help="the folder to write")
    export.add_argument("--adapter", default="auto", choices=("auto", "grpo", "sft"))
    export.add_argument("--force", action="store_true", help="replace an earlier export there")
    return parser


def _judge(args: argparse.Namespace) -> int:
    """``persrm judge``: one pair (--a/--b) or a JSONL batch (--batch/--out)."""

    single = args.a is not None or args.b is not None
    if single == (args.batch is not None):
        raise ConfigError(
            "persrm judge needs either --a and --b (one pair) or --batch (a JSONL of pairs).",
            'Example: persrm judge --run smoke --exemplars mine.jsonl --a "..." --b b.txt',
        )
    if args.batch is not None and not args.out:
        raise ConfigError("--batch needs --out, the JSONL file to write the verdicts to.",
                          "Add --out verdicts.jsonl.")  # fmt: skip
    if args.batch is not None:  # before any work: a batch can take hours to judge
        check_writable(args.out, "--out")
    exemplars = read_exemplars_file(args.exemplars) if args.exemplars else None
    if single:
        if args.a is None or args.b is None:
            raise ConfigError("--a and --b go together.", "Give both texts (or files).")
        if not exemplars:
            raise ConfigError(
                "--exemplars is missing: the judge needs the user's own texts to know them.",
                'Pass --exemplars FILE (JSONL with one {"text": ...} per line, or .txt with '
                "the texts separated by lines holding only ---).",
            )
        items = [{"id": 1, "exemplars": exemplars,
                  "prompt": text_or_file(args.prompt, "--prompt") if args.prompt else None,
                  "a": text_or_file(args.a, "--a"), "b": text_or_file(args.b, "--b")}]  # fmt: skip
        pair_fields(items[0], {"field": "--b"})  # two identical texts: said before the model loads
    else:
        items = read_batch(args.batch, exemplars)
    judge = (
        PersRM.from_run(args.run_name, args.adapter, args.batch_size)
        if args.run_name
        else PersRM.from_pretrained(args.model, args.batch_size)
    )
    if not single:
        # Every answer goes to a cache beside --out as it comes: a killed batch resumes there.
        cache = batch_cache_path(args.out)
        results = judge.compare_many(items, cache=cache, progress=True)
        out = write_batch(args.out, items, results)
        cache.unlink(missing_ok=True)
        agreed = sum(r.agree for r in results)
        stats = judge.last_cache_stats
        resumed = (f" ({stats.hits} of {2 * len(items)} answers read back from an interrupted "
                   f"run)" if stats is not None and stats.hits else "")  # fmt: skip
        print(f"{len(results)} pairs judged by {judge.name}{resumed}: {agreed} with a verdict "
              f"both orders agree on; written to {out}")  # fmt: skip
        return 0
    results = judge.compare_many(items)
    res = results[0]
    if args.json:
        print(json.dumps(res.to_dict(), ensure_ascii=False, indent=2))
        return 0
    said = {"agree": "both orders agree", "disagree": "the two orders disagree",
            "invalid": "no valid answer in at least one order"}[res.agreement]  # fmt: skip
    print(f"verdict: {res.verdict or 'none'} ({said}; judge {judge.name}, "
          f"{res.exemplars_shown} exemplars shown)")  # fmt: skip
    print(f"  order A,B: {res.verdict_ab or '-'} ({res.reason_ab}); "
          f"order B,A: {res.verdict_ba or '-'} ({res.reason_ba})")  # fmt: skip
    print(f"  reasoning: {res.reasoning if res.reasoning is not None else '(none)'}")
    return 0


def _mark_failed(args: argparse.Namespace, stage: str, err: PersRMError) -> None:
    """Record a stage that was started and then raised as failed, so nothing reads it as done."""

    if rank() != 0:  # under torchrun, rank 0 alone writes the manifest
        return
    folder = runs_dir() / (args.run_name or args.profile.strip().lower())
    if not (folder / MANIFEST).is_file():
        return
    try:
        run = RunFolder.open(folder)
        if run.status(stage) == "running":
            run.fail_stage(stage, str(err))
    except PersRMError:
        pass  # e.g. the folder is unwritable: the error being reported already says so


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "doctor":
            report = run_checks()
            print(render(report))
            return 0 if report.ok else 1
        if args.command == "run":
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
        if args.command == "judge":
            return _judge(args)
        if args.command == "export":
            out = export_run(args.run_name, args.out, args.adapter, args.force)
            print(f"exported to {out}: load it with AutoModelForCausalLM.from_pretrained, or "
                  f"PersRM.from_pretrained; model card: {out / 'README.md'}")  # fmt: skip
            return 0
        if args.command in ("sft", "grpo"):
            stage = run_sft_stage if args.command == "sft" else run_grpo_stage
            try:
                stage(args.profile, args.run_name, parse_overrides(args.overrides), args.force)
            except RunBusyError:
                raise  # another process runs this stage: its record is not ours to mark failed
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
