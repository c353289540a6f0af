"""A resumable cache in front of any generation backend: one JSONL file, one line per result.

Generating negatives, teacher traces or verdicts can take hours, and Colab disconnects, laptops
sleep, people press Ctrl-C. So every result is appended to a JSONL file the moment it is known
(flushed and fsynced), and a rerun reads the file first and asks the backend only for what is
missing. A process killed mid-write leaves at most one unfinished last line; the next run cuts
it off and says so. Results that failed (``finish_reason == "error"``) are not written, so the next
run tries them again.

A cache entry is identified by ``(request.key, backend.model)``: the same file can hold several
models' answers, and changing the model never serves another model's text. Only results are
written: no headers, no keys, no settings of the backend.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from persrm_utils.errors import ConfigError, DataError, PersRMError
from persrm_utils.generation.requests import Backend, GenRequest, GenResult
from persrm_utils.records import read_jsonl_report, truncate_partial_tail
from persrm_utils.setup.import_order import progress_bars_off

log = logging.getLogger(__name__)

try:  # advisory locks keep two processes from appending to one cache; POSIX only
    import fcntl
except ImportError:  # Windows: no lock, the rest works the same
    fcntl = None  # type: ignore[assignment]

Identity = tuple[str, str]  # (request key, model)


@dataclass
class CacheStats:
    """What the cache did, summed over every ``generate`` call of one :class:`CachedGenerator`.

    ``hits``: distinct requests answered from the file; ``generated``: results produced and written
    now; ``errors``: requests that failed and were not written (a rerun retries them);
    ``repaired``: unfinished last lines cut off the file; ``duplicates``: requests in the input
    that repeated an earlier one and were generated once.
    """

    hits: int = 0
    generated: int = 0
    errors: int = 0
    repaired: int = 0
    duplicates: int = 0


class CachedGenerator:
    """Generate through ``backend``, reading and appending ``cache_path`` so a rerun resumes.

    ``flush_every`` trades safety for speed: with 1 (the default) every result is fsynced as it
    is written, so a kill loses nothing that was generated; with N, up to N-1 results may have
    to be redone, but thousands of tiny offline results are not slowed down by thousands of
    fsyncs.
    """

    def __init__(self, backend: Backend, cache_path: Path | str, flush_every: int = 1) -> None:
        if flush_every < 1:
            raise ConfigError(
                f"flush_every must be at least 1, got {flush_every}", "use 1 or more."
            )
        if Path(cache_path).is_dir():
            raise DataError(
                "is a folder, but the generation cache is one JSONL file",
                f"pass a file path, e.g. {Path(cache_path) / 'negatives.jsonl'}.",
                path=str(cache_path),
            )
        self.backend = backend
        self.cache_path = Path(cache_path)
        self.flush_every = flush_every
        self.cache_stats = CacheStats()
        self._index: dict[Identity, GenResult] = {}
        self._synced_size = -1  # file size after our last read or write; -1: never read

    def __repr__(self) -> str:
        return f"CachedGenerator({self.backend!r}, cache_path={str(self.cache_path)!r})"

    # -- public --------------------------------------------------------------------------------

    def generate(
        self, requests: list[GenRequest], progress: bool = True, desc: str = "generating"
    ) -> list[GenResult]:
        """Results for ``requests`` in their order: cached ones read back, missing ones generated.

        Each result carries the ``meta`` of the request it answers, even when it was generated
        for an earlier request with the same key. Failed results are returned (so the caller can
        count them) but not cached.
        """
        from tqdm.auto import tqdm

        model = self.backend.model
        idents = [(r.key, model) for r in requests]
        with self._locked() as fh:
            self._refresh()
            missing: dict[Identity, GenRequest] = {}
            distinct = set(idents)
            self.cache_stats.duplicates += len(idents) - len(distinct)
            for ident, req in zip(idents, requests, strict=True):
                if ident not in self._index and ident not in missing:
                    missing[ident] = req
            hits = len(distinct) - len(missing)
            self.cache_stats.hits += hits
            failed: dict[Identity, GenResult] = {}
            # an explicit ``disable`` overrides tqdm's own TQDM_DISABLE switch, so honour it here
            # (``persrm run`` sets it in its kernels: a saved bar shows only its first frame)
            off = not progress or progress_bars_off()
            bar = tqdm(total=hits + len(missing), initial=hits, desc=desc, disable=off)
            unsynced = 0
            try:
                for res in self._produce(list(missing.values())):
                    ident = (res.key, res.model)
                    if res.finish_reason == "error":
                        failed[ident] = res
                        self.cache_stats.errors += 1
                        bar.set_postfix(errors=self.cache_stats.errors)
                    else:
                        fh.write(res.model_dump_json().encode("utf-8") + b"\n")
                        unsynced += 1
                        if unsynced >= self.flush_every:
                            _sync(fh)
                            unsynced = 0
                        self._index[ident] = res
                        self.cache_stats.generated += 1
                    bar.update(1)
            finally:
                _sync(fh)
                self._synced_size = self.cache_path.stat().st_size
                bar.close()
        if failed:
            log.warning(
                "%d of %d requests failed and were not cached; run again to retry them "
                "(first error: %s)",
                len(failed),
                len(missing),
                next(iter(failed.values())).error,
            )
        out = []
        for ident, req in zip(idents, requests, strict=True):
            res = self._index.get(ident) or failed[ident]
            out.append(res if res.meta == req.meta else res.model_copy(update={"meta": req.meta}))
        return out

    # -- internals -----------------------------------------------------------------------------

    def _produce(self, requests: list[GenRequest]) -> Iterator[GenResult]:
        """Results for ``requests`` as soon as each is known.

        A backend that can stream (``iter_generate``, the HTTP backend) gets every request at
        once and keeps its workers busy; any other gets batches of ``batch_size``.
        """
        if not requests:
            return
        stream = getattr(self.backend, "iter_generate", None)
        if stream is not None:
            for i, res in stream(requests):
                yield self._checked(requests[i], res)
            return
        size = max(1, int(getattr(self.backend, "batch_size", 1)))
        for start in range(0, len(requests), size):
            batch = requests[start : start + size]
            results = self.backend.generate(batch)
            if len(results) != len(batch):
                raise PersRMError(
                    f"backend {self.backend.name!r} returned {len(results)} results for "
                    f"{len(batch)} requests",
                    "a backend's generate() must return one result per request, in order.",
                )
            for req, res in zip(batch, results, strict=True):
                yield self._checked(req, res)

    def _checked(self, req: GenRequest, res: GenResult) -> GenResult:
        """Refuse a result filed under another request or model: it would poison the cache."""
        if res.key != req.key or res.model != self.backend.model:
            raise PersRMError(
                f"backend {self.backend.name!r} returned a result for key {res.key[:12]}/model "
                f"{res.model!r} where {req.key[:12]}/{self.backend.model!r} was asked",
                "a backend must return results in request order, with key=request.key and "
                "model=backend.model.",
            )
        return res

    def _refresh(self) -> None:
        """(Re)read the file unless it is exactly as we left it, repairing an unfinished tail."""
        path = self.cache_path
        size = path.stat().st_size if path.exists() else 0
        if size == self._synced_size:
            return
        self._index.clear()
        if size:
            try:
                records, tail = read_jsonl_report(path, GenResult, tolerate_truncated_tail=True)
            except DataError as exc:
                err = DataError(  # exc.problem already names the file and line
                    exc.problem,
                    f"this is a generation cache: delete line {exc.line} (it will be generated "
                    "again), or delete the whole file to start over.",
                )
                err.path, err.line, err.field = exc.path, exc.line, exc.field
                raise err from None
            if tail:
                truncate_partial_tail(path)
                self.cache_stats.repaired += 1
                log.info(  # records.py has already warned about it
                    "%s: repaired 1 unfinished last line (%d bytes) left by an interrupted run; "
                    "that result will be generated again.",
                    path,
                    tail,
                )
            _end_with_newline(path)
            for res in records:
                ident = (res.key, res.model)
                if res.finish_reason != "error" and ident not in self._index:
                    self._index[ident] = res
            log.info("%s: %d cached results", path, len(self._index))
        self._synced_size = path.stat().st_size if path.exists() else 0

    def _locked(self) -> _Lock:
        return _Lock(self.cache_path)


class _Lock:
    """The cache file opened for appending, locked so a second writer fails loudly at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("ab")
        except IsADirectoryError:
            raise DataError(
                "is a folder, but the generation cache is one JSONL file",
                f"pass a file path, e.g. {self.path / 'negatives.jsonl'}.",
                path=str(self.path),
            ) from None
        except OSError as err:
            raise PersRMError(
                f"cannot write the generation cache {self.path} ({err.strerror or err})",
                "make its folder writable, or pass a cache path in a writable folder.",
            ) from None
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                raise PersRMError(
                    f"another process (or another CachedGenerator) is writing {self.path}",
                    "wait for it to finish or stop it; one cache file takes one writer at a time.",
                ) from None
        self.fh = fh
        return fh

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()  # closing releases the lock


def _sync(fh: IO[bytes]) -> None:
    """Push written lines through Python's buffer and the OS cache onto the disk."""
    fh.flush()
    os.fsync(fh.fileno())


def _end_with_newline(path: Path) -> None:
    """A complete last record without its newline (an editor did that) gets one before appends."""
    with path.open("rb+") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            fh.write(b"\n")
            _sync(fh)
