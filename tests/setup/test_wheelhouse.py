"""The offline wheelhouse: building blocks on fake wheels, and the installer's argument errors.

Downloading the real wheels needs the package index and a minute, so it is left to
``make wheelhouse``; what can go wrong silently (a slimmed wheel whose RECORD still lists the
removed files, a pydantic-core that does not match pydantic, an installer that runs pip on a
folder that is not there) is checked here.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from persrm_utils.errors import ConfigError
from persrm_utils.setup.import_check import IMPORTS, plan, run_check
from persrm_utils.setup.import_order import unsloth_first
from persrm_utils.setup.pins import normalize
from persrm_utils.setup.wheelhouse import (
    FROM_PINS,
    IMAGE_HAS,
    MEASURED_BYTES,
    PART_LIMIT,
    SUPPORT,
    download_command,
    exact_requirement,
    pinned_specs,
    plan_parts,
    platform_args,
    strip_folder,
)

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install_offline.sh"


def fake_wheel(path: Path, requires: list[str] = ()) -> Path:
    meta = "Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    record = (
        "pkg/__init__.py,,\nstudio/app.js,,\nstudio/backend/x.py,,\npkg-1.0.dist-info/RECORD,,\n"
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
        zf.writestr("studio/app.js", "x" * 1000)
        zf.writestr("studio/backend/x.py", "")
        zf.writestr("pkg-1.0.dist-info/METADATA", meta)
        zf.writestr("pkg-1.0.dist-info/RECORD", record)
    return path


def test_strip_folder_removes_the_files_and_their_record_lines(tmp_path):
    wheel = fake_wheel(tmp_path / "pkg-1.0-py3-none-any.whl")
    assert strip_folder(wheel) == 2
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        record = zf.read("pkg-1.0.dist-info/RECORD").decode()
    assert not [n for n in names if n.startswith("studio/")] and "pkg/__init__.py" in names
    assert "studio/" not in record and "pkg/__init__.py" in record


def test_exact_requirement_reads_a_pinned_dependency(tmp_path):
    wheel = fake_wheel(tmp_path / "p.whl", ["pydantic-core==2.50.4", "email-validator>=2; extra"])
    assert exact_requirement(wheel, "pydantic_core") == "pydantic_core==2.50.4"
    assert exact_requirement(wheel, "email-validator") is None


def test_platform_and_python_arguments():
    x86 = platform_args("x86_64")
    assert "manylinux1_x86_64" in x86 and x86[-1] == "any"
    assert "manylinux1_aarch64" not in platform_args("aarch64")
    with pytest.raises(ConfigError):
        platform_args("riscv")
    cmd = download_command("3.12", "x86_64", Path("out"), ["trl==1.14.2"])
    assert cmd[cmd.index("--python-version") + 1] == "3.12" and "--no-deps" in cmd
    with pytest.raises(ConfigError):
        download_command("3", "x86_64", Path("out"), [])


def test_versions_come_from_the_pins():
    specs = pinned_specs()
    assert len(specs) == len(FROM_PINS) and all("==" in s for s in specs)
    assert "trl==1.14.2" in specs


def install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "name the wheelhouse folder"),
        ("missing", "no folder"),
        ("empty", "holds no .whl files"),
        ("other-python", "is for Python 9.9"),
    ],
)
def test_install_offline_refuses_bad_input_clearly(tmp_path, make, message):
    folder = tmp_path / "wh"
    if make in ("empty", "other-python"):
        folder.mkdir()
    if make == "other-python":
        (folder / "x-1.0-py3-none-any.whl").write_bytes(b"")
        (folder / "wheelhouse.json").write_text(json.dumps({"python": "9.9"}))
    proc = install(*([] if make is None else [str(folder)]))
    assert proc.returncode == 2 and message in proc.stderr


def test_install_offline_rejects_unknown_options(tmp_path):
    proc = install(str(tmp_path), "--frobnicate")
    assert proc.returncode == 2 and "unknown option" in proc.stderr


# --- the plan: what goes in, in parts that fit a 64 MiB transfer ---------------------------


def _requirement_names(dist: str) -> set[str]:
    from importlib import metadata

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = default_environment() | {"extra": ""}
    out = set()
    for line in metadata.requires(dist) or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            out.add(normalize(req.name))
    return out


def _image_closure() -> set[str]:
    """What the GPU image has: IMAGE_HAS and, recursively, what they require (read here)."""
    seen: set[str] = set()
    todo = [normalize(n) for n in IMAGE_HAS if n != "triton"]  # triton: CUDA only, no deps used
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(_requirement_names(name) - seen)
    return seen | {"triton"}


def _wheelhouse_names() -> set[str]:
    specs = [*FROM_PINS, "unsloth", *SUPPORT]
    return {normalize(re.split(r"[=<>!]", s)[0]) for s in specs} | {"pydantic-core"}


def test_every_dependency_is_in_the_wheelhouse_or_on_the_image():
    """The failure it prevents: `datasets` installed with --no-deps on an image without pyarrow,
    xxhash, dill, multiprocess or requests, so `from trl import SFTTrainer` (and `import
    unsloth`, which patches every trainer) failed after an install that said OK."""
    have = _wheelhouse_names() | _image_closure()
    for dist in ("trl", "datasets", "bitsandbytes", "pydantic", "tenacity", "gguf", "requests",
                 "multiprocess"):  # fmt: skip
        missing = _requirement_names(dist) - have
        assert not missing, f"{dist} needs {missing}: add them to SUPPORT"


def test_what_unsloth_imports_is_covered():
    """unsloth is not installed here; these are the third-party modules its import reaches
    without a try/except (read from its 2026.10.9 source)."""
    needs = {"torch", "numpy", "packaging", "tqdm", "psutil", "regex", "requests", "filelock",
             "pillow", "huggingface-hub", "transformers", "accelerate", "peft", "trl", "datasets",
             "bitsandbytes", "triton", "unsloth-zoo"}  # fmt: skip
    assert needs <= _wheelhouse_names() | _image_closure()
    assert "pyarrow" in _wheelhouse_names() and "pillow" in _image_closure()  # via matplotlib


def test_the_measured_wheels_split_into_parts_under_the_limit():
    assert set(MEASURED_BYTES) == _wheelhouse_names()
    parts = plan_parts(MEASURED_BYTES)
    sizes = [sum(MEASURED_BYTES[n] for n in part) for part in parts]
    assert len(parts) == 2 and all(s <= PART_LIMIT < 64 * 2**20 for s in sizes), sizes
    together = {"pyarrow", "bitsandbytes"}
    assert not any(together <= set(p) for p in parts)  # 52 + 41 MiB: never one part
    assert sorted(n for p in parts for n in p) == sorted(MEASURED_BYTES)


def test_a_wheel_larger_than_a_part_is_refused():
    with pytest.raises(ConfigError, match="huge alone exceed"):
        plan_parts({"huge": PART_LIMIT + 1, "small": 10})


def test_install_offline_refuses_a_wheelhouse_with_a_part_missing(tmp_path):
    """Copying part1/ but forgetting part2/ would install half and fail at import time."""
    folder = tmp_path / "wh"
    (folder / "part1").mkdir(parents=True)
    (folder / "part1" / "a-1.0-py3-none-any.whl").write_bytes(b"")
    info = {"python": "3.11", "parts": [
        {"folder": "part1", "wheels": ["a-1.0-py3-none-any.whl"]},
        {"folder": "part2", "wheels": ["b-1.0-py3-none-any.whl"]}]}  # fmt: skip
    (folder / "part1" / "wheelhouse.json").write_text(json.dumps(info))
    proc = install(str(folder))
    assert proc.returncode == 2 and "part2/b-1.0-py3-none-any.whl" in proc.stderr


# --- the import check that ends the offline install -----------------------------------------


def test_the_import_check_covers_what_the_gpu_check_imports():
    taken = {f"{m}.{n}" for m, names in IMPORTS for n in names} | {m for m, _ in IMPORTS}
    need = {"trl.SFTTrainer", "trl.GRPOTrainer", "trl.RewardTrainer", "peft", "accelerate",
            "datasets", "pyarrow", "PIL", "bitsandbytes", "torch", "transformers"}  # fmt: skip
    assert need <= taken
    assert [m for m, _ in plan(cuda=True)][:2] == ["torch", "unsloth"]  # before trl & co
    assert "unsloth" not in [m for m, _ in plan(cuda=False)]


def test_the_import_check_reports_a_broken_module():
    """trl imports its trainers lazily: `import trl` passes where `trl.GRPOTrainer` fails."""

    def importer(name: str):
        if name == "trl":
            return type("LazyTrl", (), {"SFTTrainer": 1, "__getattr__": _no_pyarrow})()
        return importlib.import_module(name)

    ok, failed = run_check(cuda=False, importer=importer)
    assert failed and failed[0].startswith("trl: ModuleNotFoundError: No module named 'pyarrow'")
    assert any(line.startswith("datasets") for line in ok)


def _no_pyarrow(self, name):
    raise ModuleNotFoundError("No module named 'pyarrow'")


def test_the_import_check_passes_here():
    proc = subprocess.run([sys.executable, "-m", "persrm_utils.setup.import_check"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GRPOTrainer" in proc.stdout and "unsloth: not imported" in proc.stdout


def test_unsloth_comes_first_only_where_it_can_run(monkeypatch):
    """On a GPU, notebook 03's hand-built LoRA/NF4 cells imported transformers, peft and
    bitsandbytes before load_model imported unsloth, which then warned it may be slower."""
    imported: list[str] = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert "not installed" in unsloth_first(cuda=True, importer=imported.append)
    monkeypatch.undo()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert "no CUDA" in unsloth_first(cuda=False, importer=imported.append)
    assert imported == []
    assert "imported first" in unsloth_first(cuda=True, importer=imported.append, loaded=["torch"])
    late = unsloth_first(cuda=True, importer=imported.append, loaded=["torch", "peft"])
    assert "after peft: restart" in late and imported == ["unsloth", "unsloth"]
