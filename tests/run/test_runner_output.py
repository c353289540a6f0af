"""``persrm run``'s own output: no kernel start-up warning per notebook.

ipykernel warns "Kernel is running over TCP without encryption" whenever a local kernel starts
over TCP; the runner starts every kernel with :data:`runner.QUIET_KERNEL`. The first test shows
the warning is real without it, so the second cannot pass by accident.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from persrm_utils.run import runner

WARNING = "without encryption"


def _notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    path = folder / "quiet.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_plain_papermill_kernel_warns(tmp_path: Path, capfd: pytest.CaptureFixture[str]):
    import papermill as pm

    notebook, out = str(_notebook(tmp_path)), str(tmp_path / "out.ipynb")
    pm.execute_notebook(notebook, out, kernel_name="python3", progress_bar=False)
    assert WARNING in capfd.readouterr().err


def test_the_runner_starts_quiet_kernels(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    _notebook(tmp_path)
    monkeypatch.setattr(runner, "notebooks_dir", lambda: tmp_path)
    runner._execute("quiet.ipynb", tmp_path / "out.ipynb", {}, "python3", "quiet", False)
    assert WARNING not in capfd.readouterr().err
    assert (tmp_path / "out.ipynb").is_file()
