"""An offline wheelhouse: the GPU extras as wheels, fetched where pip works, installed where not.

A GPU node without internet (a shared cluster, a short Colab session with a slow mirror) usually
has a CUDA torch and the big libraries already (transformers, peft, accelerate); what it lacks
are the series' training extras. :func:`build` downloads exactly those, for a chosen Python
version and platform, into one folder; ``scripts/install_offline.sh`` installs that folder with
``pip --no-index --no-deps``. Versions come from ``requirements/`` (the one source of truth),
except the small helper packages that the extras need and the pins do not name.

Unsloth's wheel also carries an optional web app (its ``studio/`` folder, about 80 MB unpacked)
that training never imports: :func:`strip_folder` removes it, with its lines in ``RECORD``, so the
slimmed wheel still installs and uninstalls cleanly through pip.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from persrm_utils.errors import ConfigError
from persrm_utils.setup.pins import normalize, read_pins

#: Pinned in requirements/: the extras a GPU image with torch/transformers/peft/accelerate lacks
#: (gguf reads the SmolLM2 weights file for the GPU check's learning run).
FROM_PINS = ("trl", "datasets", "bitsandbytes", "pydantic", "tenacity", "unsloth-zoo", "gguf")
#: Their dependencies that such an image lacks and our pins do not name. dill and multiprocess
#: are pinned to what datasets 4.8 accepts; the others take the newest release that pip finds.
SUPPORT = (
    "dill==0.4.0",
    "multiprocess==0.70.18",
    "tyro",
    "docstring-parser",
    "typeguard",
    "shtab",
    "msgspec",
    "cut-cross-entropy",
    "torchao",
    "annotated-types",
    "typing-inspection",
)
#: Unsloth's optional web app: never imported by training.
STRIPPED = "studio"
ARCHES = ("x86_64", "aarch64")
INFO_FILE = "wheelhouse.json"


def platform_args(arch: str) -> list[str]:
    """``--platform`` tags, newest first, that a current Linux pip accepts for ``arch``."""
    if arch not in ARCHES:
        raise ConfigError(f"unknown architecture '{arch}'", f"use one of {', '.join(ARCHES)}.")
    tags = ["manylinux_2_28", "manylinux_2_24", "manylinux_2_17", "manylinux2014"]
    if arch == "x86_64":
        tags.append("manylinux1")
    out: list[str] = []
    for tag in tags:
        out += ["--platform", f"{tag}_{arch}"]
    return [*out, "--platform", "any"]


def download_command(python: str, arch: str, dest: Path, specs: Sequence[str]) -> list[str]:
    """``pip download`` of ``specs`` as binary wheels for another Python and platform."""
    if not re.fullmatch(r"3\.\d+", python):
        raise ConfigError(f"Python version '{python}'", "write it as 3.12 (major.minor).")
    return [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", python, "--implementation", "cp", *platform_args(arch),
        "-d", str(dest), *specs,
    ]  # fmt: skip


def pinned_specs(names: Sequence[str] = FROM_PINS) -> list[str]:
    """``name==version`` for each name, from requirements/gpu.txt and cpu.txt."""
    pins = read_pins("gpu.txt") | read_pins("cpu.txt")
    missing = [n for n in names if normalize(n) not in pins]
    if missing:
        raise ConfigError(
            f"requirements/ pins no version of {', '.join(missing)}",
            "pin them in requirements/base.txt or gpu.txt.",
        )
    return [f"{n}=={pins[normalize(n)]}" for n in names]


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(name).decode("utf-8")


def exact_requirement(wheel: Path, dependency: str) -> str | None:
    """The ``dependency==X`` that ``wheel`` requires, if it pins one (pydantic -> pydantic-core)."""
    for line in _metadata(wheel).splitlines():
        if not line.startswith("Requires-Dist:") or ";" in line:
            continue
        match = re.match(r"Requires-Dist:\s*([A-Za-z0-9._-]+)\s*==\s*([^\s,;]+)", line)
        if match and normalize(match.group(1)) == normalize(dependency):
            return f"{dependency}=={match.group(2)}"
    return None


def strip_folder(wheel: Path, top: str = STRIPPED) -> int:
    """Rewrite ``wheel`` in place without the top-level folder ``top``; files removed."""
    prefix = top.rstrip("/") + "/"
    tmp = wheel.with_suffix(".tmp")
    removed = 0
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename.startswith(prefix):
                removed += 1
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode("utf-8").splitlines(keepends=True)
                data = "".join(ln for ln in lines if not ln.startswith(prefix)).encode("utf-8")
            dst.writestr(info, data)
    tmp.replace(wheel)
    return removed


def _find(dest: Path, name: str) -> Path:
    stem = normalize(name).replace("-", "_")
    found = [w for w in dest.glob("*.whl") if normalize(w.name.split("-")[0]) == normalize(stem)]
    if not found:
        raise ConfigError(f"no {name} wheel in {dest}", "rerun the download.")
    return found[0]


def size_mb(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.glob("*.whl")) / 1e6, 1)


def build(out: Path, python: str = "3.12", arch: str = "x86_64") -> dict:
    """Download the GPU extras into ``out`` and slim Unsloth's wheel; a summary of the folder."""
    out.mkdir(parents=True, exist_ok=True)

    def fetch(specs: Sequence[str]) -> None:
        print("pip download", " ".join(specs), flush=True)
        subprocess.run(download_command(python, arch, out, specs), check=True)

    fetch([*pinned_specs(), *SUPPORT])
    core = exact_requirement(_find(out, "pydantic"), "pydantic-core")
    if core is None:
        raise ConfigError("pydantic's wheel names no exact pydantic-core", "check its METADATA.")
    for stale in out.glob("pydantic_core-*.whl"):
        if not stale.name.startswith(f"pydantic_core-{core.split('==')[1]}-"):
            stale.unlink()  # left from a build with another pydantic
    fetch([core])
    fetch(pinned_specs(("unsloth",)))
    removed = strip_folder(_find(out, "unsloth"))
    info = {
        "python": python,
        "arch": arch,
        "wheels": sorted(w.name for w in out.glob("*.whl")),
        "size_mb": size_mb(out),
        "unsloth_files_stripped": removed,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2))
    return info
