"""The Colab install: it must keep Colab's torch, retry a failed install, and keep runs on Drive.

The pip commands are proven with ``pip install --dry-run --report`` against a throwaway
environment that holds an older torch (2.5.0), with ``--no-index --find-links`` pointing at stub
wheels built here: one per package of the pinned stack's dependency closure, each carrying the
real ``Requires-Dist`` of the version installed in this (pinned, tested) environment, plus
xformers 0.0.34 with its real ``torch==2.10.0`` and a newer torch the resolver could pick. No
network is needed, and pip's own resolver says what it would install.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from persrm_utils import paths
from persrm_utils.errors import InstallError
from persrm_utils.setup import colab
from persrm_utils.setup.colab import (
    MARKER,
    colab_install,
    colab_setup,
    fingerprint,
    install_commands,
    install_needed,
    no_deps_specs,
    point_runs_at,
    torchao_spec,
    with_deps_specs,
)
from persrm_utils.setup.pins import normalize

OLD_TORCH = "2.5.0"
#: Real metadata, read from PyPI's files for these releases (not installed here: GPU only).
GPU_ONLY_REQUIRES = {
    ("xformers", "0.0.34"): ["numpy", "torch==2.10.0"],
    ("unsloth", None): ["torch<2.15.0,>=2.4.0", "torchvision", "xformers>=0.0.27.post2"],
    ("unsloth-zoo", None): ["torch<2.15.0,>=2.4.0", "torchao>=0.13.0"],
    ("cut-cross-entropy", "25.1.1"): ["torch"],
    ("torchao", "0.17.0"): [],
    ("torch", "2.10.0"): [],
    ("torch", OLD_TORCH): [],
}


def stub_wheel(folder: Path, name: str, version: str, requires: Iterable[str]) -> Path:
    """A tiny wheel with ``name``, ``version`` and ``Requires-Dist`` lines, and nothing else."""
    dist = re.sub(r"[-.]+", "_", normalize(name))
    info = f"{dist}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    wheel_meta = "Wheel-Version: 1.0\nGenerator: stub\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = f"{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n"
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{info}/METADATA", meta)
        zf.writestr(f"{info}/WHEEL", wheel_meta)
        zf.writestr(f"{info}/RECORD", record)
    return path


def installed_closure(specs: Iterable[str]) -> dict[str, tuple[str, list[str]]]:
    """name -> (installed version, its Requires-Dist) for ``specs`` and all they need here."""
    env = default_environment()
    todo = [(Requirement(s), "") for s in specs]
    out: dict[str, tuple[str, list[str]]] = {}
    seen_extras: set[tuple[str, str]] = set()
    while todo:
        req, _ = todo.pop()
        name = normalize(req.name)
        extras = req.extras or {""}
        if all((name, e) in seen_extras for e in extras):
            continue
        seen_extras |= {(name, e) for e in extras}
        dist = metadata.distribution(name)
        requires = dist.requires or []
        out[name] = (dist.version, requires)
        for line in requires:
            dep = Requirement(line)
            if any(dep.marker is None or dep.marker.evaluate({**env, "extra": e}) for e in extras):
                todo.append((dep, ""))
    return out


@pytest.fixture(scope="module")
def stub_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(find-links folder of stub wheels, python of an environment holding torch 2.5.0)."""
    root = tmp_path_factory.mktemp("colab-pip")
    links = root / "links"
    links.mkdir()
    for name, (version, requires) in installed_closure(with_deps_specs()).items():
        stub_wheel(links, name, version, requires)
    for spec in [*no_deps_specs(f"{OLD_TORCH}+cu124"), "xformers==0.0.34"]:
        name = normalize(Requirement(spec).name)
        version = next(
            (v for (n, v) in GPU_ONLY_REQUIRES if n == name and v),
            spec.split("==")[1] if "==" in spec else "1.0",
        )
        stub_wheel(links, name, version, GPU_ONLY_REQUIRES.get((name, version)) or
                   GPU_ONLY_REQUIRES.get((name, None), []))  # fmt: skip
    stub_wheel(links, "torch", "2.10.0", [])
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    torch_wheel = stub_wheel(root, "torch", OLD_TORCH, [])
    pip(python, "install", "--no-index", "--no-deps", str(torch_wheel))
    return links, python


def pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(python)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, check=True)


def planned(links: Path, python: Path, pip_args: list[str], tmp: Path) -> dict[str, str]:
    """name -> version that ``pip install <pip_args>`` would install into ``python``'s env."""
    report = tmp / "report.json"
    args = [a for a in pip_args if a != "-q"]
    pip(python, "install", "--dry-run", "--report", str(report), "--no-index",
        "--find-links", str(links), *args)  # fmt: skip
    items = json.loads(report.read_text())["install"]
    return {normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


@pytest.mark.slow
def test_the_colab_pip_commands_keep_an_older_torch(stub_index, tmp_path):
    """The real failure: `pip install unsloth` pulls xformers, whose every release pins one torch,
    and replaces Colab's CUDA torch with another build (a broken runtime, GBs of download)."""
    links, python = stub_index
    commands = install_commands(f"{OLD_TORCH}+cu124", "unused")[:2]  # the last is `-e checkout`
    plans = [planned(links, python, cmd[5:], tmp_path) for cmd in commands]
    assert "torch" not in plans[0] and "torch" not in plans[1], plans
    assert plans[0]["transformers"] == "5.17.0" and plans[0]["trl"] == "1.14.2"
    assert {"unsloth", "unsloth-zoo"} <= set(plans[1])


@pytest.mark.slow
def test_the_dry_run_does_see_a_torch_replacement(stub_index, tmp_path):
    """The control that makes the test above mean something: xformers 0.0.34 installed with its
    dependencies asks for torch 2.10.0, and the same dry run reports it."""
    links, python = stub_index
    assert planned(links, python, ["xformers==0.0.34"], tmp_path).get("torch") == "2.10.0"


def test_gpu_packages_go_in_without_dependencies_and_xformers_matches_torch():
    with_deps = {normalize(s.split("==")[0]) for s in with_deps_specs()}
    assert not {"unsloth", "unsloth-zoo", "xformers", "torch", "vllm"} & with_deps
    assert {"transformers", "trl", "peft", "bitsandbytes", "datasets"} <= with_deps
    assert "xformers==0.0.34" in no_deps_specs("2.10.0+cu126")
    assert "xformers==0.0.33.post1" in no_deps_specs("2.9.1")
    assert not [s for s in no_deps_specs("2.13.0") if s.startswith("xformers")]  # not in table
    assert torchao_spec("2.10.0") == "torchao>=0.16.0"
    assert torchao_spec("2.9.0+cu126") == "torchao>=0.16.0,<0.18.0"
    first, second, third = install_commands("2.10.0", "/c/persrm-tutorials", python="py")
    assert "--no-deps" not in first and second[5] == "--no-deps"
    assert third[-3:] == ["--no-deps", "-e", "/c/persrm-tutorials"]


class FakePip:
    """Records pip commands; fails the command whose index is in ``fail`` (once each)."""

    def __init__(self, fail: Iterable[int] = ()) -> None:
        self.calls: list[list[str]] = []
        self.fail = set(fail)

    def __call__(self, cmd: list[str], check: bool) -> subprocess.CompletedProcess:
        self.calls.append(cmd)
        index = len(self.calls) - 1
        if index in self.fail:
            self.fail.discard(index)
            raise subprocess.CalledProcessError(1, cmd)
        return subprocess.CompletedProcess(cmd, 0)


def test_a_failed_install_is_retried_on_rerun(tmp_path):
    """Before: the clone came first and its folder was the guard, so an install that failed
    after the clone was skipped on every rerun, leaving a runtime without trl or unsloth."""
    first = FakePip(fail=[1])
    with pytest.raises(InstallError, match="run this cell again"):
        colab_install(tmp_path, run=first, torch_version=lambda: "2.9.0")
    assert not (tmp_path / MARKER).exists()
    again = FakePip()
    assert colab_install(tmp_path, run=again, torch_version=lambda: "2.9.0") is True
    assert len(again.calls) == 3 and (tmp_path / MARKER).is_file()
    third = FakePip()
    assert colab_install(tmp_path, run=third, torch_version=lambda: "2.9.0") is False
    assert third.calls == []


def test_a_new_torch_or_new_pins_install_again(tmp_path):
    colab_install(tmp_path, run=FakePip(), torch_version=lambda: "2.9.0")
    marker = tmp_path / MARKER
    assert not install_needed(marker, fingerprint(install_commands("2.9.0", tmp_path)))
    assert install_needed(marker, fingerprint(install_commands("2.10.0", tmp_path)))
    marker.write_text("{half a json")  # killed while writing it
    assert install_needed(marker, fingerprint(install_commands("2.9.0", tmp_path)))


def test_an_install_that_replaced_torch_is_an_error_and_not_marked(tmp_path):
    versions = iter(["2.9.0", "2.10.0"])
    with pytest.raises(InstallError, match=r"replaced Colab.s torch 2\.9\.0 with 2\.10\.0"):
        colab_install(tmp_path, run=FakePip(), torch_version=lambda: next(versions))
    assert not (tmp_path / MARKER).exists()


def test_runs_go_to_drive_and_paths_resolve_there(tmp_path, monkeypatch):
    """Each Colab badge opens a new runtime with its own disk: without Drive, notebook 01 finds
    no run folder from notebook 00 ("run 00_setup first")."""
    for name in (paths.ENV_RUNS, paths.ENV_C50_FETCH, paths.ENV_HOME):
        monkeypatch.setenv(name, "set, so that monkeypatch restores it after colab_setup")
        monkeypatch.delenv(name)
    monkeypatch.setattr(colab, "colab_install", lambda root: False)
    mounted: list[str] = []
    monkeypatch.setattr(colab, "DRIVE_MOUNT", str(tmp_path / "drive"))
    runs = colab_setup(tmp_path / "clone", runs_on_drive=True, mount=mounted.append)
    assert mounted == [str(tmp_path / "drive")]
    assert runs == tmp_path / "drive" / "MyDrive" / "persrm-runs" and runs.is_dir()
    assert paths.runs_dir() == runs
    assert os.environ[paths.ENV_C50_FETCH] == "1"
    assert os.environ[paths.ENV_HOME] == str((tmp_path / "clone").resolve())


def test_a_runs_folder_the_learner_chose_is_kept(tmp_path):
    env = {paths.ENV_RUNS: str(tmp_path / "mine")}
    assert point_runs_at(tmp_path / "drive", env) == (tmp_path / "mine").resolve()
    assert env[paths.ENV_RUNS] == str(tmp_path / "mine")


def test_doctor_on_colab_does_not_fail_on_the_jupyter_it_skips(monkeypatch):
    """The install cell leaves Jupyter to Colab, so papermill and jupyterlab are absent there:
    `persrm doctor` said "Some required checks FAILED" on every healthy Colab runtime."""
    from persrm_utils.setup import doctor

    real = doctor._installed
    monkeypatch.setattr(
        doctor, "_installed", lambda name: None if name in colab.NOT_ON_COLAB else real(name)
    )
    hw = doctor.detect()
    for key in [k for k in os.environ if k.startswith("COLAB_")]:
        monkeypatch.delenv(key)
    off_colab = {c.name: c.status for c in doctor._package_checks(hw)}
    assert off_colab["papermill"] == "FAIL"  # elsewhere it is required
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-20260801")
    on_colab = {c.name: c for c in doctor._package_checks(hw)}
    for name in colab.NOT_ON_COLAB & set(on_colab):
        assert on_colab[name].status == "INFO" and "Colab provides" in on_colab[name].detail
    assert not [c for c in on_colab.values() if c.status == "FAIL"]
