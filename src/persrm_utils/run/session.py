"""The first and last lines of every notebook: profile, run folder, stage bookkeeping.

A notebook starts with ``session = start_stage("02_synthetic_pairs", PROFILE, RUN_NAME,
OVERRIDES)``. That one call validates the profile, opens the run folder, checks that the earlier
stages have finished (or stops with "run 01_exemplars first"), and marks the stage as running. It
ends with ``session.finish([...artifacts])``, which hashes the artifacts into the manifest.

Between the two, the notebook's kernel holds the run folder's writer lock: another notebook, or a
``persrm`` command, writing the same run is refused with this kernel's pid and the stage (under
``persrm run`` the kernel writes under the command's lock). ``finish`` gives it back; so does
shutting down the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persrm_utils.profiles import Profile, get_profile
from persrm_utils.run.folders import RunFolder, StageRecord
from persrm_utils.run.stages import get_stage
from persrm_utils.setup.import_order import quiet_known_noise

#: Run folders a stage session of this process holds the writer lock of (one hold each).
_SESSIONS: set[Path] = set()


@dataclass
class StageSession:
    """A stage in progress inside a run folder."""

    stage: str
    profile: Profile
    run: RunFolder
    resumed: bool

    @property
    def path(self) -> Path:
        return self.run.path

    def file(self, relative: str | Path) -> Path:
        return self.run.file(relative)

    def finish(
        self, artifacts: list[str | Path] = (), inputs: dict[str, Any] | None = None
    ) -> StageRecord:
        """Mark the stage done: hash ``artifacts``; record ``inputs`` read from outside the run."""
        record = self.run.finish_stage(self.stage, artifacts, inputs)
        _SESSIONS.discard(self.run.path)
        self.run.release()  # the writer lock taken by start_stage
        print(
            f"Stage {self.stage} done in {record.seconds:.1f} s: "
            f"{len(record.artifacts)} artifact(s) recorded in {self.run.path / 'manifest.json'}"
        )
        return record


def start_stage(
    stage: str,
    profile: str = "smoke",
    run_name: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> StageSession:
    """Validate, open the run folder, check inputs, mark the stage running, print a banner."""
    quiet_known_noise()  # before any cell of the stage imports bitsandbytes or trains
    name = get_stage(stage).name
    prof = get_profile(profile, **(overrides or {}))
    run = RunFolder.create(
        run_name or prof.name, prof.name, overrides, writer=f"notebook stage {name}"
    )
    if run.path in _SESSIONS:
        run.release()  # start_stage ran before in this kernel (a cell run twice): one hold
    _SESSIONS.add(run.path)
    try:
        previous = run.status(name)
        run.start_stage(name, config=prof.model_dump(mode="json"))
    except BaseException:
        _SESSIONS.discard(run.path)
        run.release()
        raise
    resumed = previous in ("running", "failed")
    print(f"Stage {name} | profile '{prof.name}' | run folder {run.path}")
    if resumed:
        print(f"  (stage was '{previous}' before: resuming, finished work is reused)")
    return StageSession(stage=name, profile=prof, run=run, resumed=resumed)
