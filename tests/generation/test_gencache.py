"""The resumable generation cache: hits, repairs, errors, locking, and a real SIGKILL."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from persrm_utils.errors import DataError, PersRMError
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.generation.requests import (
    GenRequest,
    GenResult,
    OfflineBackend,
    scramble_last_user_message,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def requests(n: int, tag: str = "") -> list[GenRequest]:
    return [
        GenRequest(
            [{"role": "user", "content": f"request {i} {tag} of the cache test, in a few words"}],
            max_new_tokens=8,
            meta={"i": i},
        )
        for i in range(n)
    ]


class Counting:
    """An offline function that counts its calls, to prove what was (not) generated."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, req: GenRequest) -> str:
        self.calls.append(req.key)
        return scramble_last_user_message(req)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_second_run_reads_everything_back(tmp_path):
    path = tmp_path / "cache.jsonl"
    fn = Counting()
    reqs = requests(5)
    first = CachedGenerator(OfflineBackend(fn), path).generate(reqs, progress=False)
    gen = CachedGenerator(OfflineBackend(fn), path)
    again = gen.generate(reqs, progress=False)
    assert again == first and len(fn.calls) == 5
    assert (gen.cache_stats.hits, gen.cache_stats.generated) == (5, 0)
    assert [r["key"] for r in lines(path)] == [r.key for r in reqs]


def test_duplicates_are_generated_once_and_keep_their_own_meta(tmp_path):
    fn = Counting()
    base = requests(3)
    twin = GenRequest(base[1].messages, 8, meta={"i": "twin"})
    gen = CachedGenerator(OfflineBackend(fn), tmp_path / "cache.jsonl")
    out = gen.generate([*base, twin, base[0]], progress=False)
    assert len(fn.calls) == 3 and gen.cache_stats.duplicates == 2
    assert [r.meta for r in out] == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": "twin"}, {"i": 0}]
    assert out[3].text == out[1].text
    assert len(lines(tmp_path / "cache.jsonl")) == 3


def test_another_model_does_not_reuse_the_cache(tmp_path):
    path = tmp_path / "cache.jsonl"
    reqs = requests(3)
    CachedGenerator(OfflineBackend(name="a"), path).generate(reqs, progress=False)
    gen = CachedGenerator(OfflineBackend(name="b"), path)
    out = gen.generate(reqs, progress=False)
    assert gen.cache_stats.generated == 3 and {r.model for r in out} == {"b"}
    assert len(lines(path)) == 6


def test_resume_after_a_truncated_last_line(tmp_path, caplog, capsys):
    path = tmp_path / "cache.jsonl"
    reqs = requests(10)
    CachedGenerator(OfflineBackend(), path).generate(reqs[:5], progress=False)
    sixth = OfflineBackend().generate([reqs[5]])[0].model_dump_json()
    with path.open("a", encoding="utf-8") as fh:
        fh.write(sixth[: len(sixth) // 2])  # what a process killed mid-write leaves
    before = path.read_text(encoding="utf-8").splitlines()[:5]

    fn = Counting()
    gen = CachedGenerator(OfflineBackend(fn), path)
    with caplog.at_level(logging.INFO):
        out = gen.generate(reqs, progress=True, desc="resuming")
    assert "repaired 1 unfinished last line" in caplog.text
    assert " 5/10" in capsys.readouterr().err  # the bar starts at what was cached
    s = gen.cache_stats
    assert (s.hits, s.generated, s.repaired) == (5, 5, 1)
    assert fn.calls == [r.key for r in reqs[5:]]
    final = path.read_text(encoding="utf-8").splitlines()
    assert final[:5] == before
    keys = [json.loads(line)["key"] for line in final]
    assert sorted(keys) == sorted(r.key for r in reqs) and len(set(keys)) == 10
    assert [r.key for r in out] == [r.key for r in reqs]


def test_a_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "cache.jsonl"
    reqs = requests(4)
    CachedGenerator(OfflineBackend(), path).generate(reqs[:2], progress=False)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # an editor dropped the final newline
    gen = CachedGenerator(OfflineBackend(), path)
    gen.generate(reqs, progress=False)
    assert (gen.cache_stats.hits, gen.cache_stats.repaired) == (2, 0)
    assert [r["key"] for r in lines(path)] == [r.key for r in reqs]


def test_damage_in_the_middle_is_reported_with_its_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    CachedGenerator(OfflineBackend(), path).generate(requests(3), progress=False)
    rows = path.read_text(encoding="utf-8").splitlines()
    rows[1] = rows[1][:20]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2.*generation cache") as info:
        CachedGenerator(OfflineBackend(), path).generate(requests(3), progress=False)
    assert str(info.value).count("cache.jsonl, line 2:") == 1 and info.value.line == 2


class Flaky:
    """A backend whose requests fail on the first call, like a server that was briefly down."""

    name = model = "flaky"
    batch_size = 4

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def generate(self, reqs: list[GenRequest]) -> list[GenResult]:
        out = []
        for r in reqs:
            fail = r.meta["i"] % 2 == 0 and r.key not in self.seen
            self.seen.add(r.key)
            out.append(
                GenResult(
                    key=r.key,
                    text="" if fail else "ok",
                    finish_reason="error" if fail else "stop",
                    backend=self.name,
                    model=self.model,
                    error="HTTP 503" if fail else None,
                    meta=r.meta,
                )
            )
        return out


def test_errors_are_returned_but_not_cached(tmp_path, caplog):
    path = tmp_path / "cache.jsonl"
    backend = Flaky()
    gen = CachedGenerator(backend, path)
    with caplog.at_level(logging.WARNING):
        out = gen.generate(requests(6), progress=False)
    assert [r.finish_reason for r in out] == ["error", "stop"] * 3
    assert "3 of 6 requests failed" in caplog.text
    assert len(lines(path)) == 3
    out = CachedGenerator(backend, path).generate(requests(6), progress=False)
    assert all(r.finish_reason == "stop" for r in out)
    assert len(lines(path)) == 6


def test_a_backend_that_mixes_up_results_is_refused(tmp_path):
    class Wrong(OfflineBackend):
        def generate(self, reqs):
            return super().generate(reqs[::-1])

    gen = CachedGenerator(Wrong(batch_size=4), tmp_path / "cache.jsonl")
    with pytest.raises(PersRMError, match="request order"):
        gen.generate(requests(3), progress=False)


def test_flush_every_still_writes_everything(tmp_path):
    path = tmp_path / "cache.jsonl"
    CachedGenerator(OfflineBackend(), path, flush_every=7).generate(requests(20), progress=False)
    assert len(lines(path)) == 20


@pytest.mark.skipif(sys.platform == "win32", reason="file locks are POSIX only")
def test_two_writers_on_one_cache_are_refused(tmp_path):
    path = tmp_path / "cache.jsonl"
    inner = CachedGenerator(OfflineBackend(), path)

    def nested(req: GenRequest) -> str:
        inner.generate(requests(1, tag="inner"), progress=False)
        return "never"

    with pytest.raises(PersRMError, match="another process"):
        CachedGenerator(OfflineBackend(nested), path).generate(requests(1), progress=False)


# A generator run in its own process, killed with SIGKILL part-way through.
WORKER = """
import sys, time
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.generation.requests import GenRequest, OfflineBackend, scramble_last_user_message

def slow(req):
    time.sleep(float(sys.argv[2]))
    return scramble_last_user_message(req)

reqs = [
    GenRequest([{"role": "user", "content": f"kill test request {i}: a few plain words"}], 8)
    for i in range(40)
]
gen = CachedGenerator(OfflineBackend(slow, name="slow", batch_size=1), sys.argv[1])
gen.generate(reqs, progress=False)
print("finished")
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    path = tmp_path / "cache.jsonl"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(path), "0.05"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists() and path.read_bytes().count(b"\n") >= 10:
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()[1].decode()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL and b"finished" not in proc.stdout.read()
    at_kill = path.read_bytes()
    complete = at_kill[: at_kill.rfind(b"\n") + 1].decode().splitlines()
    assert 10 <= len(complete) < 40

    reqs = [
        GenRequest([{"role": "user", "content": f"kill test request {i}: a few plain words"}], 8)
        for i in range(40)
    ]
    fn = Counting()
    gen = CachedGenerator(OfflineBackend(fn, name="slow", batch_size=1), path)
    out = gen.generate(reqs, progress=False)

    assert gen.cache_stats.hits == len(complete)
    assert gen.cache_stats.generated == len(fn.calls) == 40 - len(complete)
    final = path.read_text(encoding="utf-8").splitlines()
    assert final[: len(complete)] == complete  # nothing written before the kill was lost
    keys = [json.loads(line)["key"] for line in final]
    assert len(keys) == 40 and set(keys) == {r.key for r in reqs}  # each key exactly once
    assert [r.text for r in out] == [scramble_last_user_message(r) for r in reqs]


def test_the_bar_obeys_tqdm_disable_in_headless_kernels(tmp_path, capsys, monkeypatch):
    """``persrm run`` sets TQDM_DISABLE=1 in its kernels, but an explicit ``disable=False``
    overrides it in tqdm: notebook 02's executed copy kept a stalled "negatives: 0%" bar."""
    gen = CachedGenerator(OfflineBackend(), tmp_path / "cache.jsonl")
    gen.generate(requests(3), progress=True, desc="shown")
    assert "shown: 100%" in capsys.readouterr().err
    monkeypatch.setenv("TQDM_DISABLE", "1")
    gen.generate(requests(4), progress=True, desc="hidden")
    assert "hidden" not in capsys.readouterr().err
