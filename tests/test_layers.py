"""The package's layers hold: no upward import, no import loop, counting imports inside functions.

The contract lives in ``pyproject.toml`` (``[tool.importlinter]``) and ``make lint`` runs it; these
tests keep it honest. The failure they prevent: a helper moved "for convenience" into a higher
layer (the ``Pair`` record once lived beside the pair generator, and the judge's format then
imported the data stage, which imported the model loader, which imported the profiles, which
imported the judge: a loop that only stayed hidden because the imports sat inside functions).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(root / "src"), "PATH": str(LINT.parent)}
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_layer_contract_is_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_layer_contract_fails_on_an_upward_import(tmp_path):
    """A lower layer importing a higher one (here: the records importing the CLI) is refused."""
    shutil.copytree(ROOT / "src" / "persrm_utils", tmp_path / "src" / "persrm_utils")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    records = tmp_path / "src" / "persrm_utils" / "records.py"
    upward = "\n\ndef _up():\n    from persrm_utils.cli import main\n"
    records.write_text(records.read_text() + upward)
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "persrm_utils.records -> persrm_utils.cli" in result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        stack.append(module)
        for other in sorted(graph.find_modules_directly_imported_by(module)):
            if state.get(other) == 1:
                cycles.append([*stack[stack.index(other) :], other])
            elif other not in state:
                visit(other, stack)
        stack.pop()
        state[module] = 2

    for module in sorted(graph.modules):
        if module not in state:
            visit(module, [])
    return cycles


def test_no_import_loop_between_modules():
    graph = grimp.build_graph("persrm_utils", cache_dir=None)
    assert _cycles(graph) == []


def test_the_loop_detector_finds_a_loop(tmp_path, monkeypatch):
    """The check above can fail: two modules importing each other inside functions are a loop."""
    pkg = tmp_path / "loopy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from loopy import b\n")
    (pkg / "b.py").write_text("def g():\n    from loopy import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("loopy", cache_dir=None)
    assert ["loopy.a", "loopy.b", "loopy.a"] in _cycles(graph)
