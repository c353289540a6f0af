"""Run folders: how notebooks hand work to each other.

``runs/<name>/manifest.json`` records, per stage: the profile's config, package versions, the
hardware, start and end times, the artifacts with their SHA-256 hashes, and a status. With it a
stage can refuse to start before its inputs exist (naming the notebook to run first), a finished
stage is skipped unless forced, and a reader can see afterwards exactly what produced a figure.

The manifest is rewritten atomically (temporary file + rename), so a kernel killed mid-write never
leaves a half-written manifest; a manifest damaged by hand gets a clear error with the fix.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from persrm_utils.errors import ConfigError, ManifestError, MissingInputsError
from persrm_utils.hardware import detect
from persrm_utils.paths import runs_dir
from persrm_utils.run.stages import get_stage

Status = Literal["running", "done", "failed"]
MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
#: Overrides that change which model a run uses: they cannot change within one run.
MODEL_FIELDS = ("model_source", "model_name", "model_path", "load_in_4bit")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")


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


class RunFolder:
    """A run folder and its manifest. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest

    # --- opening ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        profile: str,
        overrides: dict[str, Any] | None = None,
        root: Path | None = None,
    ) -> RunFolder:
        """Create ``<root>/<name>`` or reopen it when it exists with the same profile and model.

        Reopening with another profile, or with overrides that change the model, is refused:
        artifacts made with the tiny model must never be mixed with Qwen's in one run. Other
        overrides (more steps for one stage, say) are allowed; each stage records its own config.
        """
        if not _NAME_RE.match(name):
            raise ConfigError(
                f"Run name '{name}' is not a valid folder name.",
                "Use letters, digits, '.', '_' and '-' only (e.g. smoke-2026-11-22).",
            )
        path = (root or runs_dir()) / name
        overrides = dict(overrides or {})
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
            return run
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _unwritable(path, err) from None
        run = cls(path, Manifest(run=name, profile=profile, overrides=overrides, created_at=_now()))
        run.save()
        return run

    @classmethod
    def open(cls, path: Path | str) -> RunFolder:
        """Open an existing run folder; a missing or damaged manifest is a ManifestError."""
        path = Path(path)
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
        return cls(path, manifest)

    def save(self) -> None:
        """Write the manifest atomically."""
        data = self.manifest.model_dump_json(indent=2)
        try:
            fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=self.path)
        except OSError as err:
            raise _unwritable(self.path, err) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data + "\n")
            os.replace(tmp, self.path / MANIFEST)
        except OSError as err:
            Path(tmp).unlink(missing_ok=True)
            raise _unwritable(self.path, err) from None

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
        previous = self.manifest.stages.get(name)
        record = StageRecord(
            status="running",
            started_at=_now(),
            config=config or {},
            versions=package_versions(),
            hardware=detect().to_dict(),
            runs=(previous.runs + 1) if previous else 1,
        )
        self.manifest.stages[name] = record
        self.save()
        return record

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
        record = self.manifest.stages.get(name)
        if record is None:
            raise ManifestError(
                f"finish_stage('{name}') was called but the stage was never started in run "
                f"'{self.manifest.run}'.",
                f"Call start_stage('{name}') at the top of the notebook.",
            )
        for item in artifacts:
            self._add_artifact(record, Path(item))
        if inputs:
            record.inputs = json.loads(json.dumps(inputs, default=str))
        if training:
            record.training = json.loads(json.dumps(training, default=str))
        record.status = "done"
        record.error = None
        record.finished_at = _now()
        start = _dt.datetime.fromisoformat(record.started_at)
        record.seconds = round((_dt.datetime.now(_dt.timezone.utc) - start).total_seconds(), 1)
        self.save()
        return record

    def fail_stage(self, stage: str, error: str) -> None:
        """Mark a stage failed (used by the runner when a cell raises)."""
        name = get_stage(stage).name
        record = self.manifest.stages.get(name) or StageRecord(status="failed", started_at=_now())
        record.status = "failed"
        record.error = error[:2000]
        record.finished_at = _now()
        self.manifest.stages[name] = record
        self.save()

    def add_artifact(self, stage: str, path: str | Path) -> None:
        """Record one more artifact of a stage (e.g. the executed notebook)."""
        record = self.manifest.stages.get(get_stage(stage).name)
        if record is None:
            raise ManifestError(f"Stage '{stage}' has no record in run '{self.manifest.run}'.")
        self._add_artifact(record, Path(path))
        self.save()

    def _add_artifact(self, record: StageRecord, path: Path) -> None:
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
        record.artifacts = [a for a in record.artifacts if a.path != rel]
        record.artifacts.append(Artifact(path=rel, sha256=sha256_of(full), bytes=size))

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
