"""Errors a learner can act on.

Every error the package raises on purpose is a :class:`PersRMError`: one paragraph that says what
went wrong, where (file, line, record or field), and how to fix it. The command-line entry point
prints these without a traceback; notebooks show them as the last line of the cell output. Errors
from deep inside a library are caught at the boundary and re-raised as one of these, so a reader
never has to decode a stack trace to learn that, say, a profile name was misspelt.
"""

from __future__ import annotations


class PersRMError(Exception):
    """Base class: a problem the user can fix, with the fix in the message."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem.strip()
        self.fix = fix.strip() if fix else None
        super().__init__(self.problem + (f" Fix: {self.fix}" if self.fix else ""))


class ConfigError(PersRMError):
    """An unknown profile, an override of a field that does not exist, or a bad value."""


class ManifestError(PersRMError):
    """A run folder whose manifest.json cannot be read or does not follow the schema."""


class RunBusyError(PersRMError):
    """A run folder another process is writing (it holds the folder's writer lock)."""


class MissingInputsError(PersRMError):
    """A stage was started before the stage that produces its inputs has finished."""


class ModelUnavailableError(PersRMError):
    """A profile's model cannot be loaded on this machine (offline, missing package, no GPU)."""


class InstallError(PersRMError):
    """An install step failed, or changed something it must leave alone (Colab's CUDA torch)."""


class TrainingError(PersRMError):
    """Training ran but produced something unusable (a NaN or infinite loss or gradient)."""


class DataError(PersRMError):
    """Bad input data: names the file, the line or record, the field, and the fix."""

    def __init__(
        self,
        problem: str,
        fix: str | None = None,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path, self.line, self.field = path, line, field
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + problem, fix)
