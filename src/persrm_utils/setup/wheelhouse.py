"""An offline wheelhouse: the GPU extras as wheels, fetched where pip works, installed where not.

A GPU node without internet (a shared cluster, a short Colab session with a slow mirror) usually
has a CUDA torch and the big libraries already; :data:`IMAGE_HAS` names what the series assumes
(torch, transformers, peft, accelerate, pandas, matplotlib, httpx, rich, tabulate, triton, and
what they depend on). :func:`build` downloads, for a chosen Python version and platform, what
such a machine lacks: the series' training extras and everything they import that the image does
not have. That includes ``datasets`` with pyarrow, dill, multiprocess, xxhash and requests,
because importing unsloth patches every TRL trainer and so imports ``datasets``.

pyarrow (about 52 MiB) and bitsandbytes (about 41 MiB) do not fit together through a transfer
that carries 64 MiB at most, so the wheels are split into parts of at most :data:`PART_LIMIT`
(``wheelhouse/part1``, ``part2``, ...); ``scripts/install_offline.sh`` installs every part and
refuses a wheelhouse with a part missing. Versions come from ``requirements/`` (the one source
of truth) or, for the helpers the pins do not name, from :data:`SUPPORT`.

Unsloth's wheel also carries an optional web app (its ``studio/`` folder, about 25 MiB of its
27 MiB) that training never imports: :func:`strip_folder` removes it, with its lines in
``RECORD``, so the slimmed wheel still installs and uninstalls cleanly through pip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from persrm_utils.errors import ConfigError
from persrm_utils.setup.pins import normalize, read_pins

#: What the GPU image is assumed to have (with their own dependencies): never downloaded.
IMAGE_HAS = (
    "torch", "transformers", "peft", "accelerate", "pandas", "matplotlib", "httpx", "rich",
    "tabulate", "triton",
)  # fmt: skip
#: Pinned in requirements/: the extras such an image lacks (gguf reads the SmolLM2 weights file
#: for the GPU check's learning run).
FROM_PINS = ("trl", "datasets", "bitsandbytes", "pydantic", "tenacity", "unsloth-zoo", "gguf")
#: Their dependencies that such an image lacks and our pins do not name, at the versions the
#: CPU test environment runs (so "tested together" holds), except dill and multiprocess, pinned
#: to what datasets 4.8 accepts, and unsloth_zoo's helpers, which take pip's newest.
SUPPORT = (
    # datasets: imported at module level by datasets 4.8 (and so by every TRL trainer)
    "pyarrow==26.0.1",
    "xxhash==4.1.0",
    "dill==0.4.0",
    "multiprocess==0.70.18",
    "requests==2.34.2",
    "urllib3==2.8.0",
    "charset-normalizer==3.5.3",
    # pydantic (the profiles)
    "annotated-types",
    "typing-inspection",
    # unsloth_zoo
    "tyro",
    "docstring-parser",
    "typeguard",
    "shtab",
    "msgspec",
    "cut-cross-entropy",
    # 0.18 needs torch >= 2.10 and the image's torch is not known here; 0.16-0.17 run on both
    "torchao>=0.16.0,<0.18.0",
)
#: Largest part of the wheelhouse: under the 64 MiB that one transfer may carry, with room for
#: the part's wheelhouse.json and for a somewhat larger pyarrow release.
PART_LIMIT = 56 * 2**20
#: Wheel sizes in bytes, measured by ``make wheelhouse`` (Python 3.12, x86_64; unsloth without
#: studio/), for the plan's test; a rebuild prints the real sizes of every part.
MEASURED_BYTES: dict[str, int] = {
    "annotated-types": 13_427,
    "bitsandbytes": 43_139_553,
    "charset-normalizer": 257_134,
    "cut-cross-entropy": 22_672,
    "datasets": 528_973,
    "dill": 119_668,
    "docstring-parser": 22_484,
    "gguf": 118_475,
    "msgspec": 236_624,
    "multiprocess": 150_287,
    "pyarrow": 55_043_763,
    "pydantic": 494_071,
    "pydantic-core": 2_261_727,
    "requests": 73_075,
    "shtab": 22_887,
    "tenacity": 32_310,
    "torchao": 3_206_172,
    "trl": 927_216,
    "typeguard": 37_095,
    "typing-inspection": 14_874,
    "tyro": 217_323,
    "unsloth": 2_207_661,
    "unsloth-zoo": 2_912_210,
    "urllib3": 135_717,
    "xxhash": 472_238,
}
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


def dist_name(wheel: str | Path) -> str:
    """The normalised distribution name of a wheel file (``unsloth_zoo-1.0-...`` -> unsloth-zoo)."""
    return normalize(Path(wheel).name.split("-")[0])


def plan_parts(sizes: dict[str, int], limit: int = PART_LIMIT) -> list[list[str]]:
    """Group wheels (name -> bytes) into parts of at most ``limit`` bytes, largest first.

    First-fit decreasing: two wheels of 52 and 41 MiB land in different parts, and the small
    ones fill the gaps, so a 64 MiB transfer limit costs one extra part, not one per wheel.
    """
    too_big = sorted(n for n, b in sizes.items() if b > limit)
    if too_big:
        raise ConfigError(
            f"{', '.join(too_big)} alone exceed(s) the part limit of {limit / 2**20:.0f} MiB",
            "raise PART_LIMIT if the transfer allows it, or leave that wheel out and install it "
            "on the GPU machine some other way.",
        )
    parts: list[list[str]] = []
    used: list[int] = []
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        for i, total in enumerate(used):
            if total + sizes[name] <= limit:
                parts[i].append(name)
                used[i] += sizes[name]
                break
        else:
            parts.append([name])
            used.append(sizes[name])
    return [sorted(p) for p in parts]


def mib(n_bytes: int) -> float:
    return round(n_bytes / 2**20, 1)


def _download(out: Path, python: str, arch: str) -> int:
    """Every wheel of the plan into ``out``; Unsloth slimmed. Files removed from its wheel."""

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
    return strip_folder(_find(out, "unsloth"))


def build(out: Path, python: str = "3.12", arch: str = "x86_64") -> dict:
    """Download the GPU extras, slim Unsloth's wheel, split into parts; a summary of the folder.

    The wheels are downloaded into ``out/.download`` (kept, so a rebuild only fetches what
    changed) and copied into ``out/part1``, ``out/part2``, ... ; ``wheelhouse.json`` (in ``out``
    and in every part, so a part copied alone still says what it belongs to) lists the parts.
    """
    out.mkdir(parents=True, exist_ok=True)
    cache = out / ".download"
    cache.mkdir(exist_ok=True)
    removed = _download(cache, python, arch)
    wheels = {dist_name(w): w for w in sorted(cache.glob("*.whl"))}
    sizes = {name: w.stat().st_size for name, w in wheels.items()}
    plan = plan_parts(sizes)
    for old in out.glob("part*"):
        shutil.rmtree(old)
    parts = []
    for i, names in enumerate(plan, 1):
        folder = out / f"part{i}"
        folder.mkdir()
        for name in names:
            shutil.copy2(wheels[name], folder / wheels[name].name)
        parts.append(
            {
                "folder": folder.name,
                "wheels": sorted(wheels[n].name for n in names),
                "mib": mib(sum(sizes[n] for n in names)),
            }
        )
    info = {
        "python": python,
        "arch": arch,
        "parts": parts,
        "wheel_bytes": dict(sorted(sizes.items())),
        "total_mib": mib(sum(sizes.values())),
        "unsloth_files_stripped": removed,
    }
    text = json.dumps(info, indent=2)
    (out / INFO_FILE).write_text(text)
    for part in parts:
        (out / part["folder"] / INFO_FILE).write_text(text)
    return info
