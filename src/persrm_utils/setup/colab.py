"""The Colab pieces of every notebook, generated from the pins so they cannot drift.

``scripts/sync_notebooks.py`` writes :func:`install_cell_source` into the cell tagged
``colab-install`` of each notebook, and :func:`badge_markdown` plus :data:`COLAB_HEADER` into its
title cell; ``tests/setup/test_pins.py`` fails when a notebook's copy differs from what these
functions produce.

The cell itself only clones the series and calls :func:`colab_setup`, so everything that can go
wrong on Colab is here, in tested code:

* **torch is never replaced.** Colab ships a CUDA torch matched to its driver. Packages that only
  ask for ``torch>=X`` (transformers, trl, peft, accelerate, bitsandbytes, datasets) are installed
  with their dependencies: pip keeps the torch that is there. unsloth pulls xformers, and every
  xformers release pins one exact torch (0.0.34 requires ``torch==2.10.0``), so unsloth,
  unsloth_zoo and xformers go in with ``--no-deps``, xformers matched to the installed torch, as in
  Unsloth's own non-vLLM Colab notebooks. ``tests/setup/test_colab_install.py`` proves it with
  ``pip install --dry-run`` against an environment holding an older torch.
* **A failed or interrupted install is retried.** The marker that skips the install on a rerun
  is written only after every pip command succeeded, and it records what was installed, so a
  pulled change of the pins installs again.
* **Run folders outlive the runtime.** Each Colab badge opens its own runtime with its own disk,
  so notebook 01 cannot see the ``runs/`` of notebook 00 unless both live on Google Drive:
  :func:`colab_setup` mounts Drive and points ``PERSRM_RUNS_DIR`` at ``MyDrive/persrm-runs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from importlib import metadata
from pathlib import Path

from persrm_utils.errors import InstallError
from persrm_utils.paths import ENV_C50_FETCH, ENV_HOME, ENV_RUNS
from persrm_utils.setup.pins import normalize, stack_pins

#: GitHub "owner/name" of the series. Forks change this one line and rerun sync_notebooks.py.
REPO = "persrm-tutorials/persrm-tutorials"
BRANCH = "main"
#: The folder the install cell clones into (under Colab's working directory, /content).
CLONE_DIR = "persrm-tutorials"
#: Colab ships its own Jupyter, widgets and CUDA torch: do not reinstall them there.
NOT_ON_COLAB = frozenset(
    {"jupyterlab", "ipykernel", "ipywidgets", "nbformat", "nbclient", "papermill"}
)
#: Pinned packages whose dependencies would replace Colab's torch (through xformers):
#: installed with --no-deps.
NO_DEPS = ("unsloth", "unsloth-zoo")
#: The xformers release built for each torch minor version (Unsloth's Colab notebooks, 2026-08).
#: A torch not listed gets no xformers: unsloth imports it inside try/except and runs without it.
XFORMERS_FOR_TORCH = {"2.10": "0.0.34", "2.9": "0.0.33.post1", "2.8": "0.0.32.post2"}
#: unsloth_zoo's optional speed-ups, also --no-deps (their only heavy dependency is torch).
OPTIONAL_NO_DEPS = ("cut_cross_entropy",)
#: Written into the clone after a successful install; a rerun with the same commands skips it.
MARKER = ".colab-install.json"
#: Where run folders go on Drive (relative to the mount point).
DRIVE_MOUNT = "/content/drive"
DRIVE_RUNS = "MyDrive/persrm-runs"

#: The title line and the one-line summary added to every notebook's first cell.
COLAB_HEADER = (
    "**On Colab:** choose *Runtime → Change runtime type → T4 GPU*, then set "
    '`PROFILE = "t4"` in the Configuration cell (`smoke` and `cpu` also run on the free CPU '
    "runtime). Run the install cell first and allow Google Drive: each notebook opens in a new "
    "runtime, and run folders on Drive (`MyDrive/persrm-runs`) are how this notebook finds the "
    "previous one's work. Use the same `PROFILE` and `RUN_NAME` in every notebook."
)
#: Colab reads ``# @title`` (the spelling ruff's formatter keeps) as the form's title.
INSTALL_TITLE = (
    '# @title Colab only: clone, install the pinned GPU stack, mount Drive { display-mode: "form" }'
)

Runner = Callable[..., subprocess.CompletedProcess]


def in_colab(environ: Mapping[str, str] | None = None) -> bool:
    """True on a Google Colab runtime (it sets ``COLAB_*`` variables, e.g. COLAB_RELEASE_TAG)."""
    env = os.environ if environ is None else environ
    return any(key.startswith("COLAB_") for key in env)


def colab_url(notebook: str) -> str:
    return f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/notebooks/{notebook}"


def badge_markdown(notebook: str) -> str:
    return (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({colab_url(notebook)})"
    )


def colab_pins() -> list[str]:
    """``name==version`` for what Colab must install: the GPU stack without Jupyter itself."""
    pins = stack_pins("gpu")
    return [f"{name}=={ver}" for name, ver in sorted(pins.items()) if name not in NOT_ON_COLAB]


def torch_minor(version: str) -> str | None:
    """``'2.10.0+cu126'`` -> ``'2.10'``; None when it does not look like a torch version."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def torchao_spec(torch_version: str) -> str:
    """torchao 0.18 needs torch >= 2.10 (torch.nn.functional.ScalingType); peft 0.21 needs
    torchao >= 0.16 when torchao is installed at all, and Colab ships an older one."""
    minor = torch_minor(torch_version)
    newer = minor is not None and tuple(int(p) for p in minor.split(".")) >= (2, 10)
    return "torchao>=0.16.0" if newer else "torchao>=0.16.0,<0.18.0"


def with_deps_specs() -> list[str]:
    """The pins pip may resolve freely: none of them asks for more than ``torch>=2.4``."""
    return [p for p in colab_pins() if normalize(p.split("==")[0]) not in NO_DEPS]


def no_deps_specs(torch_version: str) -> list[str]:
    """unsloth, unsloth_zoo, their optional kernels and the xformers built for this torch."""
    specs = [p for p in colab_pins() if normalize(p.split("==")[0]) in NO_DEPS]
    specs += [*OPTIONAL_NO_DEPS, torchao_spec(torch_version)]
    xformers = XFORMERS_FOR_TORCH.get(torch_minor(torch_version) or "")
    if xformers:
        specs.append(f"xformers=={xformers}")
    return specs


def install_commands(
    torch_version: str, root: str | Path, python: str = sys.executable
) -> list[list[str]]:
    """The pip commands of the Colab install, in order (the last one installs this package)."""
    pip = [python, "-m", "pip", "install", "-q"]
    return [
        [*pip, *with_deps_specs()],
        [*pip, "--no-deps", *no_deps_specs(torch_version)],
        [*pip, "--no-deps", "-e", str(root)],
    ]


def fingerprint(commands: Sequence[Sequence[str]]) -> str:
    """What was installed, as a short digest: a change of pins or of torch changes it."""
    text = json.dumps([list(c[1:]) for c in commands])  # not the interpreter's path
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def install_needed(marker: Path, digest: str) -> bool:
    """True unless ``marker`` records a finished install of exactly ``digest``.

    An unreadable marker (a kill while it was written) counts as no marker: install again.
    """
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("fingerprint") != digest
    except (OSError, ValueError, AttributeError):
        return True


def _torch_version() -> str | None:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def colab_install(
    root: Path,
    run: Runner = subprocess.run,
    torch_version: Callable[[], str | None] = _torch_version,
) -> bool:
    """Install the pinned GPU stack once per runtime; True when pip ran.

    The marker is written last, after every command succeeded and torch was seen unchanged, so
    an install that failed or was interrupted (the learner pressed stop, the runtime hiccuped)
    runs again on the next attempt instead of being skipped forever.
    """
    before = torch_version()
    if before is None:
        raise InstallError(
            "torch is not installed in this runtime",
            "Colab runtimes ship a CUDA torch: choose Runtime > Disconnect and delete runtime, "
            "then run the notebook again.",
        )
    commands = install_commands(before, root)
    marker = Path(root) / MARKER
    digest = fingerprint(commands)
    if not install_needed(marker, digest):
        return False
    for cmd in commands:
        try:
            run(cmd, check=True)
        except subprocess.CalledProcessError as err:
            raise InstallError(
                f"`pip install {' '.join(cmd[5:])[:200]}` failed (exit code {err.returncode})",
                "run this cell again (it retries the install); if it fails the same way, "
                "Runtime > Disconnect and delete runtime and start again.",
            ) from None
    after = torch_version()
    if after != before:
        raise InstallError(
            f"the install replaced Colab's torch {before} with {after}",
            "Runtime > Disconnect and delete runtime, then run again; please report it, the "
            "install is meant to keep Colab's torch.",
        )
    marker.write_text(json.dumps({"fingerprint": digest, "torch": before}), encoding="utf-8")
    return True


def drive_runs_dir(mount: str | Path = DRIVE_MOUNT) -> Path:
    """Where run folders live on a mounted Drive."""
    return Path(mount) / DRIVE_RUNS


def point_runs_at(path: Path, environ: MutableMapping[str, str] | None = None) -> Path:
    """Set ``PERSRM_RUNS_DIR`` to ``path`` unless the learner already chose a folder; the folder
    run folders will be created in (what ``paths.runs_dir()`` then returns)."""
    env = os.environ if environ is None else environ
    env.setdefault(ENV_RUNS, str(path))
    Path(env[ENV_RUNS]).expanduser().mkdir(parents=True, exist_ok=True)
    return Path(env[ENV_RUNS]).expanduser().resolve()


def _mount_drive(mount: str) -> None:  # pragma: no cover - Colab only
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(mount)


def colab_setup(
    root: str | Path = CLONE_DIR,
    runs_on_drive: bool = True,
    mount: Callable[[str], None] = _mount_drive,
) -> Path:
    """Everything the install cell does after the clone; returns the runs folder.

    Installs (see :func:`colab_install`), makes the clone the project root, lets the Reuters C50
    corpus be downloaded on first use, and puts run folders on Drive.
    """
    root = Path(root).resolve()
    if colab_install(root):
        print("Installed the pinned GPU stack (torch left as Colab ships it).")
    else:
        print("The pinned GPU stack is already installed in this runtime.")
    os.environ.setdefault(ENV_HOME, str(root))
    os.environ.setdefault(ENV_C50_FETCH, "1")
    if runs_on_drive:
        mount(DRIVE_MOUNT)
        runs = point_runs_at(drive_runs_dir(DRIVE_MOUNT))
    else:
        runs = root / "runs"
        print("Runs stay in this runtime: the next notebook (a new runtime) will not see them.")
    print(f"Run folders: {runs}")
    return runs


def install_cell_source() -> str:
    return f"""\
{INSTALL_TITLE}
RUNS_ON_DRIVE = True  # @param {{type:"boolean"}}
# Colab only; elsewhere this cell does nothing (install with `make install`, see the README).
# Nothing before this cell imports torch: a package installed after torch was imported is not
# picked up until the runtime restarts. Rerunning it is safe: a failed install is retried.
import os
import shutil
import subprocess
import sys

REPO_URL = "https://github.com/{REPO}"
CLONE, PART = "{CLONE_DIR}", "{CLONE_DIR}.part"
IN_COLAB = "COLAB_" in "".join(os.environ)
if IN_COLAB:
    if not os.path.isdir(CLONE):  # cloned to a side folder first: never a half clone here
        shutil.rmtree(PART, ignore_errors=True)
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, PART], check=True)
        os.rename(PART, CLONE)
    sys.path.insert(0, os.path.abspath(os.path.join(CLONE, "src")))
    from persrm_utils.setup.colab import colab_setup

    colab_setup(CLONE, runs_on_drive=RUNS_ON_DRIVE)
"""
