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
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Capped:
    """What a capped command did: exit code (None when killed at the cap) and its output tails."""

    returncode: int | None
    seconds: float
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def _tail(text: str | bytes | None, limit: int = 4000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text[-limit:]


def run_capped(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None, cwd: str | None = None
) -> Capped:
    """Run ``cmd`` for at most ``timeout`` seconds; kill its whole process group at the cap."""
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
    return Capped(code, time.monotonic() - start, _tail(out), _tail(err))


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
