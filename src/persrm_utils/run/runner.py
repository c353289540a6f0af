"""Execute the notebooks of the series in order, headless, into a run folder.

``persrm run`` and ``make demo`` call :func:`run_series`. Each notebook is executed by papermill
(a real Jupyter kernel, as a learner would run it) with ``PROFILE``, ``RUN_NAME`` and ``OVERRIDES``
injected into its cell tagged ``parameters``. The executed copy, with all outputs and plots, is
written to ``runs/<name>/notebooks/``; the committed notebooks stay output-free.

With ``solutions=True`` the solutions notebooks of the selected stages (``NN_name_solutions``)
run afterwards, with the same parameters, into ``runs/<name>/notebooks/solutions/``. They only
read the run folder and check the exercises' answers, so they are not stages: the manifest does
not record them, and a failing one stops the run like a failing stage but marks nothing failed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persrm_utils.errors import ConfigError, PersRMError
from persrm_utils.paths import notebooks_dir
from persrm_utils.profiles import get_profile
from persrm_utils.run.folders import RunFolder, writer_env
from persrm_utils.run.stages import STAGES, Stage, get_stage
from persrm_utils.setup.notebooks import solutions_name


class StageFailed(PersRMError):
    """A notebook raised: carries the failing cell and the error, not a kernel traceback."""


@dataclass
class StageResult:
    stage: str
    status: str  # done, skipped, failed, not written
    seconds: float
    output: Path | None = None
    note: str = ""


def select_stages(
    from_stage: str | None = None, only: list[str] | None = None, folder: Path | None = None
) -> tuple[list[Stage], list[Stage]]:
    """(stages to run, stages of the design whose notebook is not in this checkout yet)."""
    if from_stage and only:
        raise ConfigError("--from and --only cannot be combined.", "Use one of them.")
    folder = folder or notebooks_dir()
    chosen: list[Stage] = list(STAGES)
    if only:
        names = {get_stage(s).name for s in only}
        chosen = [s for s in STAGES if s.name in names]
    elif from_stage:
        first = get_stage(from_stage).name
        chosen = [s for s in STAGES if s.name >= first]
    present = [s for s in chosen if (folder / s.notebook).is_file()]
    absent = [s for s in chosen if not (folder / s.notebook).is_file()]
    if not present:
        raise ConfigError(
            f"No notebook of the series is in {folder} ({', '.join(s.notebook for s in chosen)} "
            "were looked for), so there is nothing to run.",
            "Run persrm from the project checkout, or set PERSRM_HOME to the folder that holds "
            "notebooks/ and pyproject.toml.",
        )
    if only and absent:
        raise ConfigError(
            f"Notebook {absent[0].notebook} is not in {folder}.",
            "Check the stage name, or update your checkout.",
        )
    return present, absent


def _absolute_corpus_path(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``corpus_path`` made absolute: the notebooks run from notebooks/, not from your shell's
    folder, so a relative path would otherwise point somewhere else."""
    out = dict(overrides or {})
    value = out.get("corpus_path")
    if isinstance(value, str) and value.strip() and not Path(value).expanduser().is_absolute():
        out["corpus_path"] = str(Path(value).expanduser().resolve())
    return out


def _cell_error(err: Exception) -> str:
    source = getattr(err, "source", "") or ""
    ename = getattr(err, "ename", type(err).__name__)
    evalue = getattr(err, "evalue", str(err))
    index = getattr(err, "cell_index", None)
    head = f"cell {index}" if index is not None else "a cell"
    lines = source.strip().splitlines()
    shown = "\n".join("    " + line for line in lines[:15])
    more = f"\n    ... ({len(lines) - 15} more lines)" if len(lines) > 15 else ""
    return f"{head} raised {ename}: {evalue}\n  the cell:\n{shown}{more}"


def run_series(
    profile: str = "smoke",
    run_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    from_stage: str | None = None,
    only: list[str] | None = None,
    force: bool = False,
    kernel_name: str = "python3",
    progress: bool = True,
    echo: Callable[[str], None] = print,
    solutions: bool = False,
) -> list[StageResult]:
    """Run the selected notebooks in order; stop at the first failure with the failing cell.

    A stage already done in this run folder is skipped unless ``force``; a stage whose notebook
    is not in this checkout yet is listed as missing, never silently passed over. With
    ``solutions``, the selected stages' solutions notebooks run after them (see the module
    docstring): on a finished run, ``solutions=True`` checks every exercise without redoing work.
    """
    overrides = _absolute_corpus_path(overrides)
    prof = get_profile(profile, **overrides)
    stages, absent = select_stages(from_stage, only)  # validate before creating anything
    # The writer lock: a second `persrm run` (or sft, or a notebook) on this folder is refused at
    # once, naming this process; the notebook kernels started below write under it.
    run = RunFolder.create(run_name or prof.name, prof.name, overrides, writer="persrm run")
    try:
        with writer_env(run.path):
            return _run_stages(run, prof.name, stages, absent, overrides, force, kernel_name,
                               progress, echo, solutions)  # fmt: skip
    finally:
        run.release()


def _run_stages(
    run: RunFolder,
    profile: str,
    stages: list[Stage],
    absent: list[Stage],
    overrides: dict[str, Any],
    force: bool,
    kernel_name: str,
    progress: bool,
    echo: Callable[[str], None],
    solutions: bool,
) -> list[StageResult]:
    """The body of :func:`run_series`, run while this process holds the run folder."""
    from papermill.exceptions import PapermillExecutionError

    out_dir = run.path / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)  # writable: checked when the lock was taken
    params = {
        "PROFILE": profile,
        "RUN_NAME": run.manifest.run,
        "OVERRIDES": dict(overrides or {}),
    }
    results: list[StageResult] = []
    echo(f"Run folder: {run.path} (profile '{profile}')")
    for i, stage in enumerate(stages, 1):
        output = out_dir / stage.notebook
        if run.is_done(stage.name) and not force:
            echo(f"[{i}/{len(stages)}] {stage.name}: already done, skipped (use --force to rerun)")
            results.append(StageResult(stage.name, "skipped", 0.0, output))
            continue
        echo(f"[{i}/{len(stages)}] {stage.name}: {stage.title}")
        start = time.perf_counter()
        try:
            _execute(stage.notebook, output, params, kernel_name, stage.name, progress, force)
        except PapermillExecutionError as err:
            seconds = time.perf_counter() - start
            detail = _cell_error(err)
            RunFolder.open(run.path).fail_stage(stage.name, detail)
            results.append(StageResult(stage.name, "failed", seconds, output, detail))
            echo(summary_table(results, absent))
            raise StageFailed(
                f"Notebook {stage.notebook} failed in {detail}\n  Executed copy with all "
                f"outputs: {output}",
                f"Fix the cause, then resume from this stage: `persrm run --profile {profile} "
                f"--run {run.manifest.run} --from {stage.name}`.",
            ) from None
        seconds = time.perf_counter() - start
        run = RunFolder.open(run.path)
        if run.status(stage.name) != "done":
            note = "notebook ended without calling session.finish()"
            run.fail_stage(stage.name, note)
            results.append(StageResult(stage.name, "failed", seconds, output, note))
            raise StageFailed(f"{stage.notebook}: {note}.", "End the notebook with finish().")
        run.add_artifact(stage.name, output)
        results.append(StageResult(stage.name, "done", seconds, output))
    if solutions:
        _run_solutions(stages, params, out_dir / "solutions", kernel_name, progress, echo, results)
    results += [
        StageResult(s.name, "not written", 0.0, note="notebook not in this version yet")
        for s in absent
    ]
    echo(summary_table(results, []))
    echo(f"Executed notebooks: {out_dir}\nArtifacts and manifest: {run.path}")
    return results


#: Arguments for the kernel process papermill starts. ipykernel logs a warning at start-up,
#: "Kernel is running over TCP without encryption", whenever the transport is TCP and no CurveZMQ
#: key was provisioned: true of every local papermill kernel (it listens on 127.0.0.1 and signs
#: messages with the connection file's HMAC key), so ``persrm run`` printed it once per notebook.
#: Raising the kernel application's own log level to ERROR silences that start-up log; warnings
#: raised by the notebook's code still reach the notebook's outputs, which go through the kernel's
#: messages, not its log.
QUIET_KERNEL: tuple[str, ...] = ("--IPKernelApp.log_level=ERROR",)

#: Environment of the kernels ``persrm run`` starts. A progress bar saved in an executed notebook
#: keeps only its first frame ("Loading weights: 0%| | 0/26"), since a widget's later states are
#: not stored in the file: the executed copies would show a stalled bar in every model-loading
#: cell. So headless runs turn bars off: tqdm's own switch (read when tqdm is imported, i.e. in
#: the kernel, not in this process, whose bar shows the notebook's progress), the Hub's, which
#: transformers follows, and datasets' (TRL's tokenizing passes). In an interactive notebook the
#: bars stay on and render as widgets.
HEADLESS_ENV: dict[str, str] = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}


#: Set in the kernels of ``persrm run --force``. Without it, a rerun notebook 03 or 04 would
#: resume the finished run's last checkpoint (same settings) and end at once, so "--force" would
#: retrain nothing; with it, their trainers start fresh, as ``persrm sft/grpo --force`` do
#: (``train.trainer.resume_decision`` reads it). A notebook rerun by hand still resumes.
TRAIN_AGAIN_ENV = "PERSRM_TRAIN_AGAIN"


@contextmanager
def headless_env(train_again: bool = False) -> Iterator[None]:
    """Set :data:`HEADLESS_ENV` (and :data:`TRAIN_AGAIN_ENV` when ``train_again``) while a kernel
    starts (it inherits them); restore them after."""
    env = dict(HEADLESS_ENV, **({TRAIN_AGAIN_ENV: "1"} if train_again else {}))
    old = {k: os.environ.get(k) for k in [*env, TRAIN_AGAIN_ENV]}
    os.environ.pop(TRAIN_AGAIN_ENV, None)  # an outer process's value never leaks into a kernel
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _execute(
    notebook: str,
    output: Path,
    parameters: dict[str, Any],
    kernel_name: str,
    desc: str,
    progress: bool,
    train_again: bool = False,
) -> None:
    """Execute one committed notebook with papermill, from the notebooks folder, into ``output``;
    ``train_again``: its trainers start fresh (see :data:`TRAIN_AGAIN_ENV`)."""
    import papermill as pm

    with headless_env(train_again):
        pm.execute_notebook(
            str(notebooks_dir() / notebook),
            str(output),
            parameters=parameters,
            kernel_name=kernel_name,
            progress_bar={"desc": desc, "leave": False} if progress else False,
            cwd=str(notebooks_dir()),
            extra_arguments=list(QUIET_KERNEL),
        )


def _run_solutions(
    stages: list[Stage],
    parameters: dict[str, Any],
    out_dir: Path,
    kernel_name: str,
    progress: bool,
    echo: Callable[[str], None],
    results: list[StageResult],
) -> None:
    """Execute the solutions notebook of each stage that has one; append to ``results``.

    Nothing here touches the manifest: the solutions only read the run folder, so a failure is
    reported (and raised as StageFailed) without marking any stage failed.
    """
    from papermill.exceptions import PapermillExecutionError

    names = [solutions_name(s.notebook) for s in stages]
    todo = [(s, n) for s, n in zip(stages, names, strict=True) if (notebooks_dir() / n).is_file()]
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, (stage, notebook) in enumerate(todo, 1):
        name = notebook.removesuffix(".ipynb")
        output = out_dir / notebook
        echo(f"[solutions {i}/{len(todo)}] {name}: checking the exercises of {stage.name}")
        start = time.perf_counter()
        try:
            _execute(notebook, output, parameters, kernel_name, name, progress)
        except PapermillExecutionError as err:
            detail = _cell_error(err)
            results.append(StageResult(name, "failed", time.perf_counter() - start, output, detail))
            echo(summary_table(results, []))
            raise StageFailed(
                f"Solutions notebook {notebook} failed in {detail}\n  Executed copy with all "
                f"outputs: {output}\n  (solutions only read the run: the manifest is unchanged)",
                "A check disagreed with this run: fix the solution (or rerun the stage whose "
                f"outputs it reads), then `persrm run --profile {parameters['PROFILE']} --run "
                f"{parameters['RUN_NAME']} --only {stage.name} --solutions`.",
            ) from None
        results.append(StageResult(name, "done", time.perf_counter() - start, output))


def summary_table(results: list[StageResult], absent: list[Stage]) -> str:
    """A plain-text table of stage, status and time."""
    rows = [(r.stage, r.status, f"{r.seconds:7.1f} s") for r in results]
    rows += [(s.name, "not run", "") for s in absent]
    width = max([len(r[0]) for r in rows] + [5])
    total = sum(r.seconds for r in results)
    lines = [f"{'stage':<{width}}  {'status':<11}  time", "-" * (width + 25)]
    lines += [f"{a:<{width}}  {b:<11}  {c}" for a, b, c in rows]
    lines += ["-" * (width + 25), f"{'total':<{width}}  {'':<11}  {total:7.1f} s"]
    return "\n".join(lines)
