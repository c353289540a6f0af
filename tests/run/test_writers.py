"""One writer per run folder, every manifest update kept, and the folder given is the run.

Real processes throughout: a notebook session holding a run in one process, ``persrm`` commands in
others, two processes updating one manifest at the same moment, a folder copied with its manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from persrm_utils.errors import RunBusyError
from persrm_utils.run.folders import (
    MANIFEST,
    WRITER_HOLDER,
    RunFolder,
    RunFolderWarning,
    holds_writer,
)
from persrm_utils.run.session import start_stage

SRC = Path(__file__).resolve().parents[2] / "src"

#: A notebook's first cell, in its own process: holds the run until a line arrives on stdin.
HOLD = textwrap.dedent(
    """
    import sys
    from persrm_utils.run.session import start_stage
    session = start_stage("00_setup", "smoke", "r")
    print("holding", flush=True)
    sys.stdin.readline()
    session.finish([])
    """
)


def _env() -> dict[str, str]:
    """This checkout's package for every child (the PERSRM_RUNS_DIR of the test included)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _persrm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "persrm_utils.cli", *args],
        capture_output=True, text=True, env=_env(), timeout=600,
    )  # fmt: skip


def _holder() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=_env())  # fmt: skip
    assert proc.stdout is not None
    lines = [proc.stdout.readline()]  # start_stage's banner first, then ours
    while lines[-1] and lines[-1].strip() != "holding":
        lines.append(proc.stdout.readline())
    assert lines[-1].strip() == "holding", lines
    return proc


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: SHA-256 and modification time (ns)."""
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- one writer at a time -------------------------------------------------------------------------
def test_a_second_writer_is_refused_at_once_naming_the_holder(runs_root):
    """Before: a second `persrm run` on a run in use ran as well, and one manifest update was
    lost. Now `persrm run` and `persrm sft` are refused (exit 2) with the holder's pid, what it
    runs, its command and start time; nothing is written; the run is free once the holder ends."""
    holder = _holder()
    try:
        manifest = runs_root / "r" / MANIFEST
        before = manifest.read_bytes()
        record = json.loads((runs_root / "r" / WRITER_HOLDER).read_text())
        assert record["pid"] == holder.pid and record["what"] == "notebook stage 00_setup"
        for args in (["run", "--run", "r", "--only", "00_setup", "--no-progress"],
                     ["sft", "--run", "r"], ["grpo", "--run", "r", "--force"]):  # fmt: skip
            proc = _persrm(*args)
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            err = " ".join(proc.stderr.split())
            assert f"RunBusyError: Run folder {runs_root / 'r'} is being written by another " in err
            assert f"pid {holder.pid} on host " in err and "notebook stage 00_setup" in err
            assert "command `-c`, since 20" in err and "nothing was started" in err
            assert f"kill {holder.pid}" in err and "--run OTHER_NAME" in err
            assert "Only if that process is gone for good" in err
            assert "Traceback" not in proc.stderr
            assert manifest.read_bytes() == before  # the holder's record is untouched
        with pytest.raises(RunBusyError, match=f"pid {holder.pid} on host"):
            start_stage("00_setup", "smoke", "r")  # a second notebook, in this process
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=120) == 0
    assert not (runs_root / "r" / WRITER_HOLDER).exists()
    done = RunFolder.open(runs_root / "r").manifest.stages["00_setup"]
    assert done.status == "done" and done.runs == 1
    run = RunFolder.create("r", "smoke", writer="test")  # free again
    assert holds_writer(run.path)
    run.release()
    assert not holds_writer(run.path)


def test_a_killed_holder_frees_the_run_and_a_dead_holder_is_called_stale(runs_root):
    """kill -9 of the holder: the operating system frees the lock, the next writer proceeds (its
    own error here, not RunBusyError). A record naming a dead pid while the lock is held (a
    leftover child process, or a file system without working locks) is called stale."""
    holder = _holder()
    holder.kill()
    holder.wait(timeout=60)
    assert (runs_root / "r" / WRITER_HOLDER).is_file()  # left behind by the killed process
    proc = _persrm("sft", "--run", "r")
    assert proc.returncode == 2 and "RunBusyError" not in proc.stderr
    assert "needs the outputs of" in proc.stderr  # got past the lock, to the stage's own check
    assert not (runs_root / "r" / WRITER_HOLDER).exists()  # its hold was given back

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    holder = _holder()
    try:
        record_file = runs_root / "r" / WRITER_HOLDER
        record = json.loads(record_file.read_text())
        record["pid"] = int(gone.stdout)  # that process has exited
        record_file.write_text(json.dumps(record))
        proc = _persrm("run", "--run", "r", "--only", "00_setup", "--no-progress")
        err = " ".join(proc.stderr.split())
        assert proc.returncode == 2 and f"Process {int(gone.stdout)} is no longer running" in err
        assert f"delete {runs_root / 'r' / '.persrm-writer.lock'}" in err and "stale" in err
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=120)


UPDATE = textwrap.dedent(
    """
    import pathlib, sys, time
    from persrm_utils.run.folders import RunFolder
    path, tag, go = sys.argv[1:4]
    run = RunFolder.open(path)  # both processes read the manifest before either writes
    print("ready", flush=True)
    while not pathlib.Path(go).exists():
        time.sleep(0.01)
    for i in range(25):
        out = run.file(f"{tag}/{i}.txt")
        out.write_text(f"{tag} {i}")
        run.add_artifact("00_setup", out)
    """
)


def test_concurrent_manifest_updates_from_two_processes_are_all_kept(runs_root, tmp_path):
    """Before: each process wrote back its own copy of the manifest, so one process's 25
    artifacts were lost. Now every update is a read-modify-write under the manifest lock."""
    run = RunFolder.create("r", "smoke")
    run.start_stage("00_setup")
    go = tmp_path / "go"
    procs = []
    for tag in ("a", "b"):
        cmd = [sys.executable, "-c", UPDATE, str(run.path), tag, str(go)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=_env()))
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    record = RunFolder.open(run.path).manifest.stages["00_setup"]
    got = sorted(a.path for a in record.artifacts)
    assert got == sorted(f"{tag}/{i}.txt" for tag in ("a", "b") for i in range(25))
    assert record.status == "running"  # nothing else of the record was lost either


# --- the folder given is the run ------------------------------------------------------------------
def _base_run(root: Path) -> Path:
    session = start_stage("00_setup", "smoke", "base")
    out = session.file("environment.json")
    out.write_text("{}")
    session.finish([out])
    return root / "base"


def test_a_copied_run_folder_is_its_own_run(runs_root):
    """Before: `cp -r runs/base runs/copy` then any writer of `copy` wrote into runs/base (the
    manifest's name won). Now the folder is the run: a warning names both names, the copy's
    manifest is corrected, and nothing in the original changes."""
    base = _base_run(runs_root)
    shutil.copytree(base, runs_root / "copy")
    before = _snapshot(base)
    with pytest.warns(RunFolderWarning) as caught:
        session = start_stage("00_setup", "smoke", "copy")
    msg = str(caught[0].message)
    assert f"{runs_root / 'copy' / MANIFEST} names run 'base', but the folder is 'copy'" in msg
    assert "nothing is written into run 'base'" in msg
    assert session.path == runs_root / "copy"
    session.finish([session.file("environment.json")])
    copy = json.loads((runs_root / "copy" / MANIFEST).read_text())
    assert copy["run"] == "copy" and copy["stages"]["00_setup"]["runs"] == 2
    assert _snapshot(base) == before
    assert json.loads((base / MANIFEST).read_text())["run"] == "base"


@pytest.mark.slow
def test_persrm_run_on_a_copied_folder_leaves_the_original_untouched(runs_root):
    """The report's case, end to end: `persrm run --run copy` executes notebook 00 in the copy."""
    base = _base_run(runs_root)
    shutil.copytree(base, runs_root / "copy")
    before = _snapshot(base)
    proc = _persrm("run", "--run", "copy", "--only", "00_setup", "--force", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "names run 'base', but the folder is 'copy'" in " ".join(proc.stderr.split())
    assert _snapshot(base) == before
    copy = RunFolder.open(runs_root / "copy").manifest
    assert copy.run == "copy" and copy.stages["00_setup"].runs == 2
    assert any(a.path == "notebooks/00_setup.ipynb" for a in copy.stages["00_setup"].artifacts)
    assert (runs_root / "copy" / "notebooks" / "00_setup.ipynb").is_file()


# --- an unwritable run folder ---------------------------------------------------------------------
def _read_only(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``persrm *args`` with ``folder`` read-only to it: chmod as a user; as root (chmod does not
    stop root) a read-only bind mount in a private mount namespace, gone when the command ends."""
    cmd = [sys.executable, "-m", "persrm_utils.cli", *args]
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for path in modes:
            path.chmod(modes[path] & ~0o222)
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
    if shutil.which("unshare") is None:
        pytest.skip("no read-only folder to test with on this machine (needs unshare as root)")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"'
    wrapped = ["unshare", "-m", "sh", "-c", script, "sh", str(folder), *cmd]
    proc = subprocess.run(wrapped, capture_output=True, text=True, env=_env(), timeout=600)
    if "mount" in proc.stderr.split(":", 1)[0] or "unshare:" in proc.stderr:
        pytest.skip(f"cannot make a read-only mount here: {proc.stderr.strip()}")
    return proc


@pytest.mark.parametrize(
    "args",
    [["run", "--only", "00_setup", "--force", "--no-progress"], ["sft", "--force"]],
    ids=["run", "sft"],
)
def test_a_read_only_run_folder_with_force_is_named_before_any_work(runs_root, args):
    """Before: `persrm run --force` on a finished, read-only run died with a raw OSError
    traceback (or ran the notebook first). Now: a clear ConfigError naming the folder and the
    fix, before any stage starts, and the folder is left as it was."""
    base = _base_run(runs_root)
    (base / "notebooks").mkdir()
    before = _snapshot(base)
    proc = _read_only(base, *args[:1], "--run", "base", *args[1:])
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    assert f"ConfigError: Cannot write in {base} (" in err and "nothing was changed" in err
    assert "chmod -R u+w" in err and "PERSRM_RUNS_DIR" in err
    assert "Traceback" not in proc.stderr and "00_setup:" not in proc.stdout  # no stage began
    assert _snapshot(base) == before
