"""The offline wheelhouse: building blocks on fake wheels, and the installer's argument errors.

Downloading the real wheels needs the package index and a minute, so it is left to
``make wheelhouse``; what can go wrong silently (a slimmed wheel whose RECORD still lists the
removed files, a pydantic-core that does not match pydantic, an installer that runs pip on a
folder that is not there) is checked here.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from persrm_utils.errors import ConfigError
from persrm_utils.setup.wheelhouse import (
    FROM_PINS,
    download_command,
    exact_requirement,
    pinned_specs,
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
