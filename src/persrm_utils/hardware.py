"""What this machine can do: CPU, RAM, GPU, compute capability, and the dtype to train in.

The dtype rule is the one learners trip over most: bfloat16 only on compute capability >= 8
(Ampere and newer). A T4 (capability 7.5) answers ``torch.cuda.is_bf16_supported()`` with True
through emulation, and training then runs slowly or produces NaNs, so that answer is never used.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Hardware:
    """A snapshot of the machine, stored in every stage record of the manifest."""

    python: str
    platform: str
    cpu_count: int
    ram_gb: float
    torch: str | None
    cuda: bool
    gpu_name: str | None = None
    vram_gb: float | None = None
    compute_capability: tuple[int, int] | None = None
    disk_free_gb: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def bf16(self) -> bool:
        """Native bfloat16: compute capability 8.0 or newer (never emulated support)."""
        return supports_bf16(self.compute_capability)


def _ram_gb() -> float:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
        return round(pages * size / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        return 0.0


def detect(disk_path: Path | None = None) -> Hardware:
    """Detect the machine. Imports torch (about 2 s) but never initialises CUDA when absent."""
    notes: list[str] = []
    try:
        import torch
    except ImportError:
        torch = None  # type: ignore[assignment]
        notes.append("torch is not installed")
    cuda = bool(torch is not None and torch.cuda.is_available())
    gpu_name = vram = cap = None
    if cuda:
        props = torch.cuda.get_device_properties(0)
        gpu_name = props.name
        vram = round(props.total_memory / 1024**3, 1)
        cap = (props.major, props.minor)
    disk = None
    if disk_path is not None:
        probe = disk_path if disk_path.exists() else disk_path.parent
        if probe.exists():
            disk = round(shutil.disk_usage(probe).free / 1024**3, 1)
    return Hardware(
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
        cpu_count=os.cpu_count() or 1,
        ram_gb=_ram_gb(),
        torch=getattr(torch, "__version__", None),
        cuda=cuda,
        gpu_name=gpu_name,
        vram_gb=vram,
        compute_capability=cap,
        disk_free_gb=disk,
        notes=notes,
    )


def supports_bf16(capability: tuple[int, int] | None) -> bool:
    """True only for compute capability >= 8.0 (Ampere: A100, RTX 30xx, L4, and newer)."""
    return capability is not None and tuple(capability) >= (8, 0)


def choose_dtype_name(capability: tuple[int, int] | None) -> str:
    """'bfloat16' on Ampere+, 'float16' on older GPUs (T4, V100), 'float32' on CPU."""
    if capability is None:
        return "float32"
    return "bfloat16" if supports_bf16(capability) else "float16"


def choose_dtype(capability: tuple[int, int] | None):  # -> torch.dtype
    """The torch dtype for :func:`choose_dtype_name`."""
    import torch

    return getattr(torch, choose_dtype_name(capability))


def recommend_profile(hw: Hardware) -> tuple[str, str]:
    """(profile, reason) for this machine."""
    if hw.cuda and hw.vram_gb is not None:
        if hw.vram_gb >= 20:
            return "24gb", f"{hw.gpu_name} with {hw.vram_gb} GB: room for the 7B model in 4-bit"
        if hw.vram_gb >= 12:
            return "t4", f"{hw.gpu_name} with {hw.vram_gb} GB: the 1.5B model in 4-bit fits"
        return "t4", (
            f"{hw.gpu_name} has only {hw.vram_gb} GB: use the t4 profile with "
            "model_name='Qwen/Qwen2.5-0.5B-Instruct'"
        )
    if hw.ram_gb and hw.ram_gb < 4:
        return "smoke", f"no GPU and {hw.ram_gb} GB RAM: the cpu profile needs about 2 GB free"
    return "cpu", (
        "no CUDA GPU: 'cpu' (SmolLM2-135M, a real small model) learns on this machine; "
        "'smoke' checks the mechanics in minutes"
    )


def python_ok(version: str | None = None) -> bool:
    """The series is tested on Python 3.11 and supports 3.10-3.12."""
    major, minor = (sys.version_info[:2]) if version is None else map(int, version.split(".")[:2])
    return (major, minor) >= (3, 10) and (major, minor) < (3, 13)
