"""Keep the committed notebooks clean and in step with the package.

Committed notebooks carry no outputs (executed copies live in run folders), the standard Colab
install cell generated from the pins (a collapsed form cell on Colab), and in their title cell a
Colab badge generated from their own file name followed by the line that tells a Colab user which
runtime and profile to choose.
``python scripts/sync_notebooks.py`` rewrites them; ``--check`` (and the tests) only report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from persrm_utils.paths import notebooks_dir
from persrm_utils.setup.colab import COLAB_HEADER, badge_markdown, install_cell_source

if TYPE_CHECKING:
    import nbformat

# nbformat is imported where it is used: the training code reaches this module (through the
# runner's ``solutions_name``), and a GPU image without Jupyter must still train. The first GPU
# check died at import for want of nbformat, which neither the image nor the wheelhouse had.

INSTALL_TAG = "colab-install"
PARAMETERS_TAG = "parameters"
BADGE_PREFIX = "[![Open In Colab]"
HEADER_PREFIX = "**On Colab:**"
#: Colab shows a code cell with this metadata as its form (the #@title line), code hidden.
FORM_VIEW = {"cellView": "form"}
SOLUTIONS_SUFFIX = "_solutions"


def series_notebooks(folder: Path | None = None) -> list[Path]:
    """The ordered notebooks (``NN_name.ipynb``), solutions and scratch files excluded."""
    folder = folder or notebooks_dir()
    return sorted(
        p for p in folder.glob("[0-9][0-9]_*.ipynb") if not p.stem.endswith(SOLUTIONS_SUFFIX)
    )


def solutions_notebooks(folder: Path | None = None) -> list[Path]:
    """The worked solutions to the exercises (``NN_name_solutions.ipynb``), in series order."""
    folder = folder or notebooks_dir()
    return sorted(folder.glob(f"[0-9][0-9]_*{SOLUTIONS_SUFFIX}.ipynb"))


def solutions_name(notebook: str) -> str:
    """``00_setup.ipynb`` -> ``00_setup_solutions.ipynb``: where its exercises are solved."""
    return notebook.removesuffix(".ipynb") + f"{SOLUTIONS_SUFFIX}.ipynb"


def committed_notebooks(folder: Path | None = None) -> list[Path]:
    """Every notebook kept clean by sync: the series, then the solutions (also run by CI)."""
    return series_notebooks(folder) + solutions_notebooks(folder)


def _tagged(nb: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


def problems(path: Path) -> list[str]:
    """What is out of step in one notebook (empty list: clean)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            out.append(f"cell {i} has outputs or an execution count (strip them)")
    install = _tagged(nb, INSTALL_TAG)
    if len(install) != 1:
        out.append(f"needs exactly one cell tagged '{INSTALL_TAG}', has {len(install)}")
    elif install[0].source.strip() != install_cell_source().strip():
        out.append("the Colab install cell differs from the pins (run scripts/sync_notebooks.py)")
    elif install[0].metadata.get("cellView") != FORM_VIEW["cellView"]:
        out.append("the Colab install cell is not a collapsed form (run scripts/sync_notebooks.py)")
    if len(_tagged(nb, PARAMETERS_TAG)) != 1:
        out.append(f"needs exactly one cell tagged '{PARAMETERS_TAG}' (papermill parameters)")
    first = nb.cells[0] if nb.cells else None
    if (
        first is None
        or first.cell_type != "markdown"
        or badge_markdown(path.name) not in first.source
    ):
        out.append("the first markdown cell lacks its Colab badge (run scripts/sync_notebooks.py)")
    elif COLAB_HEADER not in first.source:
        out.append("the first markdown cell lacks the Colab runtime/profile line (run sync)")
    return out


def sync(path: Path) -> bool:
    """Strip outputs, regenerate the install cell and the badge. True when the file changed."""
    import nbformat

    before = path.read_text(encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("papermill", None)
    for cell in _tagged(nb, INSTALL_TAG):
        cell.source = install_cell_source().rstrip("\n")
        cell.metadata.update(FORM_VIEW)
    first = nb.cells[0]
    lines = [
        ln for ln in first.source.splitlines() if not ln.startswith((BADGE_PREFIX, HEADER_PREFIX))
    ]
    insert_at = 1 if lines and lines[0].startswith("#") else 0
    lines[insert_at:insert_at] = ["", badge_markdown(path.name), "", COLAB_HEADER, ""]
    # collapse the blank lines the badge shuffle may have doubled
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    first.source = text
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.validate(nb)
    after = nbformat.writes(nb) + "\n"
    if after != before:
        path.write_text(after, encoding="utf-8")
        return True
    return False
