"""The Colab pieces of every notebook, generated from the pins so they cannot drift.

``scripts/sync_notebooks.py`` writes :func:`install_cell_source` into the cell tagged
``colab-install`` of each notebook and :func:`badge_markdown` into its title;
``tests/setup/test_pins.py`` fails when a notebook's copy differs from what these functions produce.
"""

from __future__ import annotations

from persrm_utils.setup.pins import stack_pins

#: GitHub "owner/name" of the series. Forks change this one line and rerun sync_notebooks.py.
REPO = "persrm-tutorials/persrm-tutorials"
BRANCH = "main"
#: Colab ships its own Jupyter, widgets and CUDA torch: do not reinstall them there.
_NOT_ON_COLAB = {"jupyterlab", "ipykernel", "ipywidgets", "nbformat", "nbclient", "papermill"}


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
    return [f"{name}=={ver}" for name, ver in sorted(pins.items()) if name not in _NOT_ON_COLAB]


def install_cell_source() -> str:
    pins = ",\n        ".join(f'"{p}"' for p in colab_pins())
    return f"""\
# Colab only: clone the series and install the pinned GPU stack (a few minutes). Elsewhere this
# cell does nothing: install with `make install` (see the README) instead.
# Nothing before this cell imports torch: a package installed after torch was imported is not
# picked up until the runtime restarts (Runtime > Restart session, then run from the top).
import os
import subprocess
import sys

REPO_URL = "https://github.com/{REPO}"
IN_COLAB = "COLAB_" in "".join(os.environ)
if IN_COLAB and not os.path.isdir("persrm-tutorials"):
    subprocess.run(["git", "clone", "--depth", "1", REPO_URL], check=True)
    pins = [
        {pins},
    ]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *pins], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", "persrm-tutorials"],
        check=True,
    )
if IN_COLAB:
    sys.path.insert(0, os.path.abspath("persrm-tutorials/src"))
    os.environ.setdefault("PERSRM_HOME", os.path.abspath("persrm-tutorials"))
    # Checkpoints and runs survive a disconnect when they live on Drive:
    # from google.colab import drive; drive.mount("/content/drive")
    # os.environ["PERSRM_RUNS_DIR"] = "/content/drive/MyDrive/persrm-runs"
"""
