"""Time caps for checks that must always come back with figures.

A GPU loan is short and a hung step must not eat it. Two tools keep every measurement inside its
budget:

* :func:`run_capped` runs a command in its own process group and kills the whole group (the
  command and anything it started) when the cap is reached, so a stuck CUDA kernel or a
  deadlocked data loader cannot outlive its part;
* :class:`StepClock`, a ``TrainerCallback``, times every optimizer step and asks the trainer to
  stop once a deadline has passed, so a training run ends early, cleanly, with its adapter saved
  and the steps it managed recorded, instead of being killed with nothing to show.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Capped:
    """What a capped command did: exit code (None when killed at the cap) and its output tails.

    ``failure``: when it exited non-zero, :func:`failure_summary` of its *whole* stderr (the tail
    in ``stderr`` may have lost the start of the traceback).
    """

    returncode: int | None
    seconds: float
    stdout: str
    stderr: str
    failure: str = ""

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def _tail(text: str | bytes | None, limit: int | None = 4000) -> str:
    """The last ``limit`` characters (all of them for None), bytes decoded."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if limit is None else text[-limit:]


def run_capped(
    cmd: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    log: Path | None = None,
) -> Capped:
    """Run ``cmd`` for at most ``timeout`` seconds; kill its whole process group at the cap.

    ``log``: a file that receives the command's whole stdout and stderr. The returned tails are
    cut to a few thousand characters, and a crash deep inside Unsloth or TRL prints a traceback
    far longer than that: the first GPU check lost every frame but ``F.embedding`` that way.
    """
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,  # its own process group: the kill below reaches grandchildren
    )
    try:
        out, err = proc.communicate(timeout=max(1.0, timeout))
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    out_text, err_text = _tail(out, None), _tail(err, None)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(
            f"$ {' '.join(cmd)}\n# exit code: {code}\n\n## stdout\n{out_text}\n"
            f"## stderr\n{err_text}",
            encoding="utf-8",
        )
    failure = failure_summary(err_text or out_text) if code else ""
    return Capped(code, time.monotonic() - start, _tail(out_text), _tail(err_text), failure)


#: Frames that only relay a call (``nn.Module.__call__`` and its wrappers): a traceback through
#: a model repeats them at every layer, and they say nothing about where the fault is.
_RELAY_FRAMES = {"_call_impl", "_wrapped_call_impl", "inner", "decorate_context", "wrapper"}
_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')


def failure_summary(stderr: str, limit: int = 3000) -> str:
    """The last Python traceback in ``stderr``, one short line per frame, and its exception.

    Why: a child that dies in a CUDA kernel prints hundreds of lines, and the tail alone (what
    a report has room for) shows only the innermost frames of torch. Paths are cut at
    ``site-packages/`` and relay frames are dropped, so the report keeps the whole call chain
    (the project's frame, then TRL's or Unsloth's, then the layer) within ``limit`` characters;
    when it is still too long the outermost frames go first. A CUDA kernel's "Assertion ...
    failed" line, printed before the traceback, follows the exception as ``device: ...``.
    Without a traceback: the tail.
    """
    start = stderr.rfind("Traceback (most recent call last):")
    if start < 0:
        return stderr[-limit:]
    # a CUDA kernel's own assert ("...Indexing.cu:1422: indexSelectLargeIndex: ... Assertion
    # `srcIndex < srcSelectDimSize` failed.") is printed before the traceback, once per thread
    device = list(dict.fromkeys(ln.strip() for ln in stderr[:start].splitlines()
                                if "Assertion" in ln))[:2]  # fmt: skip
    frames: list[str] = []
    rest: list[str] = []
    for line in stderr[start:].splitlines()[1:]:
        m = _FRAME.match(line)
        if m and not rest:
            if m["func"] not in _RELAY_FRAMES:
                path = m["path"].split("site-packages/")[-1]
                frames.append(f"{path}:{m['line']} in {m['func']}")
        elif line.strip() and not line.startswith((" ", "[W")) and frames:
            rest.append(line)  # the exception and its message (code lines are indented)
    exception = "\n".join([*rest[:6], *(f"device: {ln[:300]}" for ln in device)])
    while frames and len("\n".join(frames)) + len(exception) + 40 > limit:
        frames.pop(0)
    return "traceback (innermost last):\n" + "\n".join(frames) + f"\n{exception}"


#: A frame line of a :func:`failure_summary`: ``path:line in function``.
SUMMARY_FRAME = re.compile(r":\d+ in \S+$")


def failure_headline(error: str) -> str:
    """The exception line of a :func:`failure_summary`, else the error's first line: what fits
    in a table cell (at most 200 characters)."""
    lines = [ln for ln in error.splitlines() if ln.strip()]
    if lines and lines[0].startswith("traceback"):
        lines = [ln for ln in lines[1:] if not SUMMARY_FRAME.search(ln)] or lines
    return lines[0][:200] if lines else ""


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON through a temporary file and a rename: a kill mid-write leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class Deadline:
    """An absolute point in time (``time.monotonic``) with the arithmetic parts need."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def left(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.left() <= 0


def _callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


@dataclass
class StepClock:
    """Seconds per optimizer step, and a stop at ``deadline`` (see :meth:`callback`).

    The first step includes one-off costs (CUDA kernels compiled, Unsloth's patches, the
    optimizer's state allocated), so :meth:`summary` reports it apart from the mean of the rest.
    """

    deadline: Deadline | None = None
    durations: list[float] = field(default_factory=list)
    stopped_early: bool = False
    _started: float | None = None

    def callback(self) -> Any:
        """A ``TrainerCallback`` bound to this clock (built lazily: transformers is heavy)."""
        clock = self

        class _Callback(_callback_base()):  # type: ignore[misc]
            def on_step_begin(self, args, state, control, **kwargs):
                clock._started = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                if clock._started is not None:
                    clock.durations.append(time.perf_counter() - clock._started)
                if clock.deadline is not None and clock.deadline.passed():
                    clock.stopped_early = state.global_step < state.max_steps
                    control.should_training_stop = True

        return _Callback()

    def summary(self) -> dict[str, Any]:
        warm = self.durations[1:] or self.durations
        return {
            "steps_timed": len(self.durations),
            "first_step_s": round(self.durations[0], 3) if self.durations else None,
            "s_per_step": round(sum(warm) / len(warm), 3) if warm else None,
            "stopped_by_time_cap": self.stopped_early,
        }
