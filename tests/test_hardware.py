"""dtype choice and profile recommendation, with the GPU mocked where there is none."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from persrm_utils import hardware
from persrm_utils.hardware import Hardware, choose_dtype, choose_dtype_name, recommend_profile


@pytest.mark.parametrize(
    ("capability", "dtype"),
    [(None, "float32"), ((7, 0), "float16"), ((7, 5), "float16"), ((8, 0), "bfloat16"),
     ((8, 9), "bfloat16"), ((9, 0), "bfloat16")],
)  # fmt: skip
def test_dtype_by_compute_capability(capability, dtype):
    assert choose_dtype_name(capability) == dtype
    assert choose_dtype(capability) == getattr(torch, dtype)


def test_a_t4_gets_fp16_even_when_torch_claims_bf16(monkeypatch):
    """A T4 (7.5) answers is_bf16_supported() with True through emulation: never trust it."""
    props = SimpleNamespace(name="Tesla T4", total_memory=15 * 1024**3, major=7, minor=5)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    hw = hardware.detect()
    assert hw.cuda and hw.gpu_name == "Tesla T4" and hw.compute_capability == (7, 5)
    assert hw.vram_gb == 15.0
    assert hw.bf16 is False
    assert choose_dtype_name(hw.compute_capability) == "float16"
    assert recommend_profile(hw)[0] == "t4"


def _hw(**kw) -> Hardware:
    base = dict(python="3.11.7", platform="Linux x86_64", cpu_count=2, ram_gb=24.0,
                torch="2.13.0", cuda=False)  # fmt: skip
    return Hardware(**{**base, **kw})


def test_recommendations():
    assert recommend_profile(_hw())[0] == "cpu"
    assert recommend_profile(_hw(ram_gb=2.0))[0] == "smoke"
    gpu = dict(cuda=True, gpu_name="RTX 4090", compute_capability=(8, 9))
    assert recommend_profile(_hw(vram_gb=24.0, **gpu))[0] == "24gb"
    assert recommend_profile(_hw(vram_gb=15.0, **gpu))[0] == "t4"
    profile, reason = recommend_profile(_hw(vram_gb=8.0, **gpu))
    assert profile == "t4" and "Qwen2.5-0.5B" in reason


def test_this_machine_is_detected_without_a_gpu():
    hw = hardware.detect()
    assert hw.cpu_count >= 1 and hw.ram_gb > 0
    assert hw.torch is not None
    if not torch.cuda.is_available():
        assert hw.cuda is False and hw.compute_capability is None


def test_python_version_window():
    assert hardware.python_ok("3.11.7") and hardware.python_ok("3.10.0")
    assert not hardware.python_ok("3.9.18") and not hardware.python_ok("3.13.0")
