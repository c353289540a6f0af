"""Run folders: how notebooks hand work to each other.

``runs/<name>/manifest.json`` records, per stage: the profile's config, package versions, the
hardware, start and end times, the artifacts with their SHA-256 hashes, and a status. With it a
stage can refuse to start before its inputs exist (naming the notebook to run first), a finished
stage is skipped unless forced, and a reader can see afterwards exactly what produced a figure.

The manifest is rewritten atomically (temporary file + rename), so a kernel killed mid-write never
leaves a half-written manifest; a manifest damaged by hand gets a clear error with the fix.

One writer at a time: ``persrm run``, ``persrm sft``/``grpo`` and a notebook's ``start_stage`` hold
the run folder's writer lock (``.persrm-writer.lock``, a ``filelock`` lock the operating system
frees when its process ends, however it ends) and record who they are beside it
(``.persrm-writer.json``), so a second writer is refused at once with the holder's pid, host,
command and start time. Each manifest update is also a read-modify-write of the file on disk under
a short lock (``.manifest.lock``), so an update made by another process (the notebook kernel that
``persrm run`` starts, say) is never overwritten with an older copy.

The folder is the run: a copied folder (``cp -r runs/base runs/copy``) still names ``base`` in its
manifest, and the name is corrected to the folder's (with a warning) so nothing is written into
the original.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import re
import socket
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, TypeVar

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from persrm_utils.errors import ConfigError, ManifestError, MissingInputsError, RunBusyError
from persrm_utils.hardware import detect
from persrm_utils.paths import runs_dir
from persrm_utils.run.stages import get_stage

Status = Literal["running", "done", "failed"]
MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
#: Overrides that change which model a run uses: they cannot change within one run.
MODEL_FIELDS = ("model_source", "model_name", "model_path", "load_in_4bit")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
#: The writer lock of a run folder, and the record of who holds it (written beside it).
WRITER_LOCK = ".persrm-writer.lock"
WRITER_HOLDER = ".persrm-writer.json"
#: Held only while the manifest is read, changed and replaced (milliseconds).
MANIFEST_LOCK = ".manifest.lock"
#: Seconds a manifest update waits for another process's update before giving up.
MANIFEST_LOCK_WAIT_S = 120.0
#: Set by a writer for the processes it starts (the notebook kernels of ``persrm run``): the
#: resolved run folder it holds. A child writing that folder runs under its parent's lock.
ENV_WRITER = "PERSRM_RUN_WRITER"

_T = TypeVar("_T")


class RunFolderWarning(UserWarning):
    """Something about a run folder was corrected on the fly (its manifest's name, say)."""


def _unwritable(path: Path, err: OSError) -> ConfigError:
    """A run folder (or the folder above it) that cannot be written: say which and what to do."""
    return ConfigError(
        f"Cannot write in {path} ({err.strerror or err}): the run folder must be writable, "
        "and nothing was changed in it.",
        f"Make it writable (`chmod -R u+w {path}`), or work on a copy: set PERSRM_RUNS_DIR to a "
        "writable folder (in a notebook: os.environ['PERSRM_RUNS_DIR'] = ...) and copy the run "
        "folder there.",
    )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_writable(path: Path) -> None:
    """Create and delete a probe file in ``path``: an unwritable run folder (read-only files,
    a read-only mount) is reported before any work, not after minutes of it."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
    except OSError as err:
        raise _unwritable(path, err) from None
    os.close(fd)
    os.unlink(probe)


# --- the writer lock --------------------------------------------------------------------------
@dataclass
class _Hold:
    lock: FileLock | None  # None: the parent process holds the lock (ENV_WRITER)
    count: int


#: Writer locks this process holds, by resolved run folder (re-entrant: a notebook cell that
#: calls start_stage twice, or run_sft_stage called from a command that already holds the run).
_HELD: dict[str, _Hold] = {}


def _key(path: Path) -> str:
    return str(Path(path).resolve())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or we cannot tell: assume alive)
    return True


def _busy(path: Path) -> RunBusyError:
    """Who holds the run folder, from the record beside the lock, and what to do about it."""
    lock, record = path / WRITER_LOCK, path / WRITER_HOLDER
    try:
        holder = json.loads(record.read_text(encoding="utf-8"))
        if not isinstance(holder, dict):
            raise ValueError(holder)
    except (OSError, ValueError):
        return RunBusyError(
            f"Run folder {path} is being written by another process (its record {record} is "
            "missing or unreadable: it may be starting right now). Two writers would overwrite "
            "each other's manifest updates, so nothing was started.",
            f"Wait for the other `persrm` command or notebook to finish, then run this again. If "
            f"no other process uses this run, delete {lock} and {record}.",
        )
    pid, host = holder.get("pid"), holder.get("host")
    who = (
        f"pid {pid} on host {host}, {holder.get('what', 'a writer')}, command "
        f"`{holder.get('command', '?')}`, since {holder.get('started_at', '?')}"
    )
    problem = (
        f"Run folder {path} is being written by another process ({who}). Two writers would "
        "overwrite each other's manifest updates, so nothing was started."
    )
    if host == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
        return RunBusyError(
            problem + f" Process {pid} is no longer running on this host, yet the lock is held: "
            "a process it started (a Jupyter kernel, a torchrun worker) still holds it, or the "
            "file system does not release locks of dead processes.",
            f"Stop the leftover process (`ps -ef | grep {pid}`), or, if there is none, delete "
            f"{lock} and {record} (a stale lock) and run this again.",
        )
    return RunBusyError(
        problem,
        f"Wait for it to finish and run this again, or stop it (`kill {pid}` on {host}, or shut "
        "down that notebook's kernel) if it is stuck; to work in parallel, use another run "
        "(--run OTHER_NAME). Only if that process is gone for good (a Colab runtime that "
        "disconnected while the run folder was on Drive, a machine that rebooted) and the lock "
        f"stayed: delete {lock} and {record}.",
    )


def acquire_writer(path: Path, what: str) -> None:
    """Take the writer lock of run folder ``path`` for this process, or raise RunBusyError.

    Never waits: a second writer is told at once who holds the folder. Re-entrant within one
    process. A process started by a writer of the same folder (``ENV_WRITER``) writes under its
    parent's lock. An unwritable folder is a ConfigError here, before any work.
    """
    key = _key(path)
    held = _HELD.get(key)
    if held is not None:
        held.count += 1
        return
    if os.environ.get(ENV_WRITER) == key:
        _HELD[key] = _Hold(None, 1)
        return
    _check_writable(path)
    lock = FileLock(path / WRITER_LOCK, timeout=0, thread_local=False)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        raise _busy(path) from None
    except OSError as err:
        raise _unwritable(path, err) from None
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "what": what,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "?",
        "started_at": _now(),
    }
    try:
        _write_atomically(path / WRITER_HOLDER, json.dumps(holder, indent=2) + "\n")
        (path / WRITER_HOLDER).chmod(0o644)  # mkstemp's 0600 would hide it from other users
    except OSError as err:
        lock.release()
        raise _unwritable(path, err) from None
    _HELD[key] = _Hold(lock, 1)


def release_writer(path: Path) -> None:
    """Give back one hold of the writer lock (the last one removes the record and unlocks)."""
    key = _key(path)
    held = _HELD.get(key)
    if held is None:
        return
    held.count -= 1
    if held.count > 0:
        return
    del _HELD[key]
    if held.lock is not None:
        (Path(key) / WRITER_HOLDER).unlink(missing_ok=True)
        held.lock.release()


def holds_writer(path: Path) -> bool:
    """Whether this process holds (or runs under its parent's) writer lock of ``path``."""
    return _key(path) in _HELD


@contextmanager
def writer_env(path: Path) -> Iterator[None]:
    """Processes started inside this block (papermill's kernels) write under our lock."""
    old = os.environ.get(ENV_WRITER)
    os.environ[ENV_WRITER] = _key(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_WRITER, None)
        else:
            os.environ[ENV_WRITER] = old


def releases_writer(fn: Callable[..., _T]) -> Callable[..., _T]:
    """Decorator: the writer locks ``fn`` takes (through ``RunFolder.create(writer=...)``) are
    given back when it returns or raises, so a long-lived process (a notebook, a test) that
    calls ``run_sft_stage`` does not keep the run folder locked afterwards."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        before = {key: hold.count for key, hold in _HELD.items()}
        try:
            return fn(*args, **kwargs)
        finally:
            for key in list(_HELD):
                for _ in range(_HELD[key].count - before.get(key, 0)):
                    release_writer(Path(key))

    return wrapper


def _write_atomically(target: Path, text: str) -> None:
    """Temporary file in the same folder + rename: readers see the old or the new file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, or of a folder (its files' relative paths and contents, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


class Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str  # relative to the run folder
    sha256: str
    bytes: int


class StageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Status
    started_at: str
    finished_at: str | None = None
    seconds: float | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    hardware: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[Artifact] = Field(default_factory=list)
    #: What the stage read from outside the run folder (e.g. the corpus: path and SHA-256).
    inputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    runs: int = 1  # how many times the stage was started (resumes included)
    #: For a training stage: the fingerprint of the settings its weights were trained with (the
    #: adapter's own training.json holds the settings themselves) and the checkpoint it resumed.
    training: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    run: str
    profile: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    created_at: str
    stages: dict[str, StageRecord] = Field(default_factory=dict)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide results (for the manifest)."""

    names = [
        "persrm-utils", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
        "bitsandbytes", "tokenizers", "unsloth", "unsloth_zoo", "vllm",
    ]  # fmt: skip
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _folder_name(path: Path) -> str:
    """The run's name is its folder's (``runs/copy/.`` and ``runs/copy`` alike)."""
    return Path(os.path.abspath(path)).name


def _read_manifest(path: Path) -> Manifest:
    """Read and validate ``path/manifest.json``; a missing or damaged one is a ManifestError."""
    file = path / MANIFEST
    if not file.is_file():
        raise ManifestError(
            f"{file} does not exist, so {path} is not a run folder (or notebook 00 was never "
            "run for it).",
            "Run notebooks/00_setup.ipynb first, or `persrm run --only 00_setup --run NAME`.",
        )
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = (
            f"line {err.lineno}, column {err.colno}: {err.msg}"
            if isinstance(err, json.JSONDecodeError)
            else str(err)
        )
        raise ManifestError(
            f"{file} is not valid JSON ({where}).",
            "Repair it by hand, or delete the run folder and run the series again; the "
            "artifacts beside it are untouched but will be rebuilt.",
        ) from None
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ManifestError(
            f"{file}: field '{field}' {first['msg'].lower()}.",
            "Repair that field, or delete the run folder and run the series again.",
        ) from None
    if manifest.schema_version != SCHEMA_VERSION:
        raise ManifestError(
            f"{file} has schema_version {manifest.schema_version}; this package writes "
            f"{SCHEMA_VERSION}.",
            "Start a new run with this version of the package (--run NEW_NAME).",
        )
    return manifest


def _put_artifact(record: StageRecord, artifact: Artifact) -> None:
    """Add an artifact to a stage record, replacing an earlier entry for the same path."""
    record.artifacts = [a for a in record.artifacts if a.path != artifact.path]
    record.artifacts.append(artifact)


class RunFolder:
    """A run folder and its manifest. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        #: The run name manifest.json holds on disk (None: not read or written yet); differs
        #: from ``manifest.run`` in a copied folder until the corrected name is saved.
        self._name_on_disk: str | None = None

    # --- opening ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        profile: str,
        overrides: dict[str, Any] | None = None,
        root: Path | None = None,
        *,
        writer: str | None = None,
    ) -> RunFolder:
        """Create ``<root>/<name>`` or reopen it when it exists with the same profile and model.

        Reopening with another profile, or with overrides that change the model, is refused:
        artifacts made with the tiny model must never be mixed with Qwen's in one run. Other
        overrides (more steps for one stage, say) are allowed; each stage records its own config.

        With ``writer`` (what is about to write, e.g. "persrm run"), the folder's writer lock is
        taken first (:func:`acquire_writer`): another process writing it is a RunBusyError, an
        unwritable folder a ConfigError, both before anything is changed. The caller gives the
        lock back with :meth:`release` (or holds it until its process ends).
        """
        if not _NAME_RE.match(name):
            raise ConfigError(
                f"Run name '{name}' is not a valid folder name.",
                "Use letters, digits, '.', '_' and '-' only (e.g. smoke-2026-11-22).",
            )
        path = (root or runs_dir()) / name
        overrides = dict(overrides or {})
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _unwritable(path, err) from None
        if writer is not None:
            acquire_writer(path, writer)
        try:
            return cls._create_or_reopen(path, name, profile, overrides)
        except BaseException:
            if writer is not None:
                release_writer(path)
            raise

    @classmethod
    def _create_or_reopen(
        cls, path: Path, name: str, profile: str, overrides: dict[str, Any]
    ) -> RunFolder:
        if (path / MANIFEST).exists():
            run = cls.open(path)
            m = run.manifest
            now = json.loads(json.dumps(overrides))
            changed = {k for k in MODEL_FIELDS if m.overrides.get(k) != now.get(k)}
            if m.profile != profile or changed:
                raise ConfigError(
                    f"Run '{name}' in {path} was made with profile '{m.profile}' and overrides "
                    f"{m.overrides}, not '{profile}' and {overrides}.",
                    "Give this run another name (--run NAME / RUN_NAME), or delete the folder to "
                    "start it again.",
                )
            _check_writable(path)  # an existing read-only run: said now, not after the work
            if run._name_on_disk != run.manifest.run:  # a copied folder: record its own name
                run.save()
            return run
        run = cls(path, Manifest(run=name, profile=profile, overrides=overrides, created_at=_now()))
        run.save()
        return run

    @classmethod
    def open(cls, path: Path | str) -> RunFolder:
        """Open an existing run folder; a missing or damaged manifest is a ManifestError.

        The folder is the run: when the manifest names another run (the folder was copied or
        renamed), a RunFolderWarning names both and the name is corrected to the folder's (in
        memory; the next save writes it), so every path resolves inside this folder.
        """
        path = Path(path)
        manifest = _read_manifest(path)
        folder = _folder_name(path)
        written = manifest.run
        if written != folder:
            warnings.warn(
                f"{path / MANIFEST} names run '{written}', but the folder is '{folder}' (copied "
                f"or renamed?): this is run '{folder}', its manifest's name is corrected to "
                f"'{folder}' when the run is next written, and nothing is written into run "
                f"'{written}'.",
                RunFolderWarning,
                stacklevel=2,
            )
            manifest.run = folder
        run = cls(path, manifest)
        run._name_on_disk = written
        return run

    def release(self) -> None:
        """Give back the writer lock taken by ``create(writer=...)`` (no-op if not held)."""
        release_writer(self.path)

    @contextmanager
    def _manifest_lock(self) -> Iterator[None]:
        """Held while the manifest is read, changed and replaced; other processes wait."""
        lock = FileLock(self.path / MANIFEST_LOCK, timeout=MANIFEST_LOCK_WAIT_S,
                        thread_local=False)  # fmt: skip
        try:
            lock.acquire()
        except Timeout:
            raise ManifestError(
                f"The manifest of {self.path} stayed locked by another process for "
                f"{MANIFEST_LOCK_WAIT_S:.0f} s ({self.path / MANIFEST_LOCK}).",
                "Check which persrm command or notebook is writing this run; if none is, "
                f"delete {self.path / MANIFEST_LOCK} and run this again.",
            ) from None
        except OSError as err:
            raise _unwritable(self.path, err) from None
        try:
            yield
        finally:
            lock.release()

    def _write(self) -> None:
        data = self.manifest.model_dump_json(indent=2)
        try:
            _write_atomically(self.path / MANIFEST, data + "\n")
        except OSError as err:
            raise _unwritable(self.path, err) from None
        self._name_on_disk = self.manifest.run

    def save(self) -> None:
        """Write this manifest, as it is in memory, atomically (under the manifest lock)."""
        with self._manifest_lock():
            self._write()

    def _update(self, change: Callable[[Manifest], _T]) -> _T:
        """Read the manifest from disk, apply ``change``, write it back, all under the manifest
        lock: what another process wrote in between is kept, never overwritten by an older copy.
        """
        with self._manifest_lock():
            if (self.path / MANIFEST).is_file():
                fresh = _read_manifest(self.path)
                fresh.run = _folder_name(self.path)
            else:  # not written yet (or moved away): the copy in memory is all there is
                fresh = self.manifest.model_copy(deep=True)
            result = change(fresh)
            self.manifest = fresh
            self._write()
        return result

    # --- stages ----------------------------------------------------------------------------
    def status(self, stage: str) -> Status | None:
        record = self.manifest.stages.get(get_stage(stage).name)
        return record.status if record else None

    def is_done(self, stage: str) -> bool:
        """Finished, and its artifacts are still on disk."""
        name = get_stage(stage).name
        record = self.manifest.stages.get(name)
        if record is None or record.status != "done":
            return False
        return all((self.path / a.path).exists() for a in record.artifacts)

    def require(self, stage: str) -> None:
        """Raise MissingInputsError naming the first earlier stage that has not finished."""
        this = get_stage(stage)
        for need in this.needs:
            if self.is_done(need):
                continue
            record = self.manifest.stages.get(need)
            state = "has not been run" if record is None else f"is '{record.status}'"
            if record is not None and record.status == "done":
                state = "finished but some of its files are gone"
            raise MissingInputsError(
                f"{this.name} needs the outputs of {need}, which {state} in run "
                f"'{self.manifest.run}' ({self.path}).",
                f"Run notebooks/{need}.ipynb first with the same PROFILE and RUN_NAME, or "
                f"`persrm run --profile {self.manifest.profile} --run {self.manifest.run} "
                f"--from {need}`.",
            )

    def start_stage(self, stage: str, config: dict[str, Any] | None = None) -> StageRecord:
        """Check inputs and mark a stage as running (a rerun counts as a resume)."""

        name = get_stage(stage).name
        self.require(name)
        versions, hardware = package_versions(), detect().to_dict()  # outside the lock: slow

        def change(manifest: Manifest) -> StageRecord:
            self.manifest = manifest
            self.require(name)  # again, on the manifest as it is on disk now
            previous = manifest.stages.get(name)
            record = StageRecord(
                status="running",
                started_at=_now(),
                config=config or {},
                versions=versions,
                hardware=hardware,
                runs=(previous.runs + 1) if previous else 1,
            )
            manifest.stages[name] = record
            return record

        return self._update(change)

    def _never_started(self, name: str) -> ManifestError:
        return ManifestError(
            f"finish_stage('{name}') was called but the stage was never started in run "
            f"'{self.manifest.run}'.",
            f"Call start_stage('{name}') at the top of the notebook.",
        )

    def finish_stage(
        self,
        stage: str,
        artifacts: list[str | Path] = (),
        inputs: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> StageRecord:
        """Hash the artifacts, record the outside inputs and what trained the weights (if any),
        and mark the stage done."""
        name = get_stage(stage).name
        if name not in self.manifest.stages:
            raise self._never_started(name)
        hashed = [self._artifact(Path(item)) for item in artifacts]  # outside the lock: slow
        recorded_inputs = json.loads(json.dumps(inputs, default=str)) if inputs else None
        recorded_training = json.loads(json.dumps(training, default=str)) if training else None

        def change(manifest: Manifest) -> StageRecord:
            record = manifest.stages.get(name)
            if record is None:
                raise self._never_started(name)
            for artifact in hashed:
                _put_artifact(record, artifact)
            if recorded_inputs:
                record.inputs = recorded_inputs
            if recorded_training:
                record.training = recorded_training
            record.status = "done"
            record.error = None
            record.finished_at = _now()
            start = _dt.datetime.fromisoformat(record.started_at)
            now = _dt.datetime.now(_dt.timezone.utc)
            record.seconds = round((now - start).total_seconds(), 1)
            return record

        return self._update(change)

    def fail_stage(self, stage: str, error: str) -> None:
        """Mark a stage failed (used by the runner when a cell raises)."""
        name = get_stage(stage).name

        def change(manifest: Manifest) -> None:
            record = manifest.stages.get(name) or StageRecord(status="failed", started_at=_now())
            record.status = "failed"
            record.error = error[:2000]
            record.finished_at = _now()
            manifest.stages[name] = record

        self._update(change)

    def add_artifact(self, stage: str, path: str | Path) -> None:
        """Record one more artifact of a stage (e.g. the executed notebook)."""
        name = get_stage(stage).name
        missing = ManifestError(f"Stage '{stage}' has no record in run '{self.manifest.run}'.")
        if name not in self.manifest.stages:
            raise missing
        artifact = self._artifact(Path(path))

        def change(manifest: Manifest) -> None:
            record = manifest.stages.get(name)
            if record is None:
                raise missing
            _put_artifact(record, artifact)

        self._update(change)

    def _artifact(self, path: Path) -> Artifact:
        """The manifest entry of one artifact: its path in the run folder, hash and size."""
        full = path if path.is_absolute() else self.path / path
        if not full.exists():
            raise ManifestError(
                f"Artifact {full} does not exist, so it cannot be recorded.",
                "Write the file before finishing the stage.",
            )
        rel = str(full.resolve().relative_to(self.path.resolve()))
        size = (
            full.stat().st_size
            if full.is_file()
            else sum(p.stat().st_size for p in full.rglob("*") if p.is_file())
        )
        return Artifact(path=rel, sha256=sha256_of(full), bytes=size)

    def file(self, relative: str | Path) -> Path:
        """A path inside the run folder (parents created)."""
        out = self.path / relative
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _unwritable(out.parent, err) from None
        return out

    def summary(self) -> list[dict[str, Any]]:
        """One row per stage for tables."""
        rows = []
        for name, rec in self.manifest.stages.items():
            rows.append(
                {
                    "stage": name,
                    "status": rec.status,
                    "seconds": rec.seconds,
                    "artifacts": len(rec.artifacts),
                    "runs": rec.runs,
                }
            )
        return rows
