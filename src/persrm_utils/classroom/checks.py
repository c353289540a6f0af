"""How every exercise check reports, and the run folder it reads (shared by the per-notebook
checks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from persrm_utils.errors import MissingInputsError
from persrm_utils.paths import runs_dir
from persrm_utils.profiles import get_profile
from persrm_utils.run.folders import RunFolder
from persrm_utils.run.stages import get_stage

if TYPE_CHECKING:
    from persrm_utils.run.folders import RunFolder


#: The rewards of the 04 warm-up: two groups of G = 4 (correctness + format reward).
REWARDS_04: tuple[float, ...] = (1.2, -0.9, -1.0, -0.95, 1.2, 1.2, 1.2, 1.2)
GROUP_04 = 4
#: The model whose QLoRA memory the 03 warm-up asks for (a key of ``memory.ARCHS``).
MODEL_03 = "Qwen2.5-7B"


class ExerciseError(AssertionError):
    """A wrong answer: the message says what was expected and gives a hint.

    A subclass of AssertionError so that pytest, papermill and a reader all see a failed check,
    not a crash of the package.
    """


# ----------------------------------------------------------------------------------------------
# How every check reports
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """What a check returns: true when the answer is right, false when it is not answered yet.

    A check prints its verdict as it runs ("OK: ...", "Not answered yet: ..."); a wrong answer
    raises :class:`ExerciseError`. Returning a bare ``True``/``False`` also put a stray ``False``
    under every unanswered exercise cell of an executed notebook (the cell's last value), so the
    result hides itself in Jupyter (``_ipython_display_`` shows nothing) and stays usable in code:
    ``if check_03_core(answer): ...``.
    """

    passed: bool
    message: str

    def __bool__(self) -> Checked:
        return self.passed

    def _ipython_display_(self) -> None:
        """Show nothing: the message was printed when the check ran."""


def _ok(message: str) -> Checked:
    print(f"OK: {message}")
    return Checked(True, message)


def _not_answered(hint: str) -> Checked:
    print(f"Not answered yet: {hint}")
    return Checked(False, hint)


def _wrong(problem: str, hint: str) -> NoReturn:
    raise ExerciseError(f"{problem} Hint: {hint}")


def _number(value: Any, what: str) -> float:
    """``value`` as a float, or an ExerciseError that names what a number was wanted for."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        _wrong(
            f"{what} should be a number, got {type(value).__name__} {value!r:.60}.",
            "put the number itself in the answer, not a string or a table.",
        )
    return float(value)


def _mapping(answer: Any, keys: Sequence[str], example: str) -> Mapping[str, Any]:
    """Check that a dict answer has the keys the exercise asks for."""
    if not isinstance(answer, Mapping):
        _wrong(
            f"Expected a dict like {example}, got {type(answer).__name__}.",
            "build the answer as a dict with exactly those keys.",
        )
    missing = [k for k in keys if k not in answer]
    if missing:
        _wrong(
            f"The answer lacks the key(s) {', '.join(map(repr, missing))}; expected {example}.",
            "spell the keys exactly as in the exercise.",
        )
    return answer


def _callable(answer: Any, signature: str) -> Callable[..., Any]:
    if not callable(answer):
        _wrong(
            f"Expected a function {signature}, got {type(answer).__name__}.",
            "define the function with def, then set answer = the_function (no parentheses).",
        )
    return answer


def _call(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    case: str,
    hint: str = "run it on that input yourself and read the traceback.",
) -> Any:
    """Call the learner's function; an exception becomes an ExerciseError naming the case.

    ``hint`` replaces the generic advice where the usual cause of a crash is known (a shape
    error in a matmul almost always means two factors in the wrong order).
    """
    try:
        return fn(*args)
    except ExerciseError:
        raise
    except Exception as err:  # the learner's bug, shown with the input that triggered it
        _wrong(f"Your function raised {type(err).__name__}: {err} (on {case}).", hint)


# ----------------------------------------------------------------------------------------------
# The run folder, read-only
# ----------------------------------------------------------------------------------------------


def _run(run: RunFolder | Path | str) -> RunFolder:

    return run if isinstance(run, RunFolder) else RunFolder.open(run)


def solution_run(stage: str, profile: str = "smoke", run_name: str | None = None) -> RunFolder:
    """Open the run folder whose outputs a solutions notebook checks, without changing it.

    Solutions only read: they never call ``start_stage`` or save the manifest, so running them
    (by hand, or with ``persrm run --solutions``) leaves the run exactly as the series made it.
    The folder is found as the series finds it (``$PERSRM_RUNS_DIR`` or ``runs/``, then
    ``RUN_NAME`` or the profile's name); a stage that has not finished there is an error that
    names the notebook to run first.
    """

    name = get_stage(stage).name
    prof = get_profile(profile)
    path = runs_dir() / (run_name or prof.name)
    run = RunFolder.open(path)
    if not run.is_done(name):
        raise MissingInputsError(
            f"The solutions of {name} read what it produced, but {name} is not done in run "
            f"'{run.manifest.run}' ({path}).",
            f"Run notebooks/{name}.ipynb first with the same PROFILE and RUN_NAME, or `persrm run "
            f"--profile {prof.name} --run {run.manifest.run} --from {name}`.",
        )
    print(f"Run folder {path} (read-only): stage {name} is done.")
    return run


def _stage_record(run: RunFolder, stage: str) -> Any:
    record = run.manifest.stages.get(stage)
    if record is None or record.status != "done":
        _wrong(
            f"Stage {stage} is not done in run '{run.manifest.run}' ({run.path}).",
            f"run notebooks/{stage}.ipynb for this run first.",
        )
    return record


# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Tensors returned by a learner's function (the by-hand exercises of 03 and 04)
# ----------------------------------------------------------------------------------------------


def _tensor(result: Any, expected: Any, what: str, hint: str) -> Any:
    """The learner's result as a float tensor of ``expected``'s shape, or an ExerciseError."""
    import torch

    if not isinstance(result, torch.Tensor):
        _wrong(f"{what} should return a torch tensor, got {type(result).__name__}.", hint)
    if tuple(result.shape) != tuple(expected.shape):
        _wrong(
            f"{what} returned shape {tuple(result.shape)}, expected {tuple(expected.shape)}.", hint
        )
    return result.detach().float()


def _same(got: Any, expected: Any, atol: float) -> bool:
    import torch

    return bool(torch.allclose(got, expected.detach().float(), atol=atol, rtol=1e-4))


def _known_slip(got: Any, slips: Sequence[tuple[Any, str, str]], atol: float) -> None:
    """Raise with the slip's own hint when ``got`` equals what that slip computes.

    ``slips`` holds (the slip's result on the same inputs, what the slip is, how to fix it): a
    learner learns more from "you forgot alpha / r" than from "the numbers differ".
    """
    for value, slip, fix in slips:
        if _same(got, value, atol):
            _wrong(f"Your result is what {slip} gives.", fix)
