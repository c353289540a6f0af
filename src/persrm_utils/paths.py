"""Where things live, found without relying on the current working directory.

Notebooks executed by papermill, nbmake or Jupyter run from their own folder, commands run from
anywhere, and Colab clones the repository somewhere else again. Every path the package uses is
therefore derived here from (in order) an environment variable, the repository this package was
installed from (editable install), or the current directory as a last resort.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variables a user can set to move things.
ENV_HOME = "PERSRM_HOME"  # the project root (holds notebooks/, data/)
ENV_RUNS = "PERSRM_RUNS_DIR"  # where run folders are created (default: <home>/runs)
ENV_CACHE = "PERSRM_CACHE_DIR"  # model caches (default: ~/.cache/persrm)
ENV_C50 = "PERSRM_C50_DIR"  # a local copy of Reuters C50 (C50train/, C50test/)
#: "1": when no local copy of Reuters C50 is found, download it into <home>/data/reuters_c50 (the
#: Colab install cell sets it; elsewhere the corpus is never fetched behind the learner's back).
ENV_C50_FETCH = "PERSRM_C50_FETCH"


def _looks_like_project(path: Path) -> bool:
    return (path / "notebooks").is_dir() and (path / "pyproject.toml").is_file()


def project_root() -> Path:
    """The repository root: ``$PERSRM_HOME``, else the checkout this package lives in, else cwd.

    Raises nothing: when no checkout can be found (a plain ``pip install``), the current directory
    is used, so commands still work and write their runs beside the user.
    """
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if _looks_like_project(parent):
            return parent
    cwd = Path.cwd().resolve()
    for parent in (cwd, *cwd.parents):
        if _looks_like_project(parent):
            return parent
    return cwd


def notebooks_dir() -> Path:
    """The ordered notebooks of the series."""
    return project_root() / "notebooks"


def data_dir() -> Path:
    """Built-in seed data shipped with the repository."""
    return project_root() / "data"


def runs_dir() -> Path:
    """Parent folder of all run folders (``$PERSRM_RUNS_DIR`` or ``<project>/runs``)."""
    env = os.environ.get(ENV_RUNS)
    return Path(env).expanduser().resolve() if env else project_root() / "runs"


def cache_dir() -> Path:
    """Model caches (the tiny model, SmolLM2 converted from GGUF): ``$PERSRM_CACHE_DIR``."""
    env = os.environ.get(ENV_CACHE)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "persrm"
    return base.resolve()


def explicit_c50() -> Path | None:
    """``$PERSRM_C50_DIR`` when it is set: then it is the only place the corpus is read from."""
    env = os.environ.get(ENV_C50)
    return Path(env).expanduser().resolve() if env else None


def c50_candidates() -> list[Path]:
    """Places to look for a local Reuters C50 copy, most specific first.

    When ``$PERSRM_C50_DIR`` is set it is the only candidate: a wrong value must fail, not fall
    back silently to another copy of the corpus.
    """
    explicit = explicit_c50()
    if explicit is not None:
        return [explicit]
    out: list[Path] = []
    root = project_root()
    out += [root / "data" / "reuters_c50", root.parent / "shared" / "data" / "reuters_c50"]
    return out


def find_c50() -> Path | None:
    """The first candidate folder holding ``C50train/``, or None."""
    for path in c50_candidates():
        if (path / "C50train").is_dir():
            return path
    return None


C50_HINT = (
    "copy Reuters C50 (a folder with C50train/ and C50test/, 25 MB) here and pass `--c50 DIR` "
    "or set PERSRM_C50_DIR"
)


def find_c50_root(path: str | None) -> tuple[Path | None, str]:
    """(the C50 folder, where) or (None, why not and the fix)."""

    if path is not None:
        root = Path(path).expanduser()
        if (root / "C50train").is_dir():
            return root, f"--c50 {root}"
        return None, f"{root} has no C50train/ folder: {C50_HINT}"
    root = find_c50()
    if root is None:
        return None, f"Reuters C50 not found: {C50_HINT}"
    return root, "PERSRM_C50_DIR or the project's data folder"
