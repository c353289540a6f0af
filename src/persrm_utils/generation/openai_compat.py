"""Any OpenAI-compatible ``/v1/chat/completions`` server as a generation backend.

Concurrency, timeouts, retries with backoff; the key is read from the environment at call time
and never stored, logged or cached.
"""

from __future__ import annotations

import contextvars
import email.utils
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from persrm_utils.errors import ConfigError, ModelUnavailableError, PersRMError
from persrm_utils.generation.requests import FinishReason, GenRequest, GenResult

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP endpoint
# ----------------------------------------------------------------------------------------------

#: Hosts where a server usually runs without a key (vLLM, llama.cpp, Ollama on this machine).
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})
#: The longest ``Retry-After`` we wait: a server asking for more is treated as asking for this.
MAX_RETRY_AFTER_S = 300.0
#: What replaces an API key wherever a server echoes it back.
REDACTED = "[REDACTED]"

_FIXES = {
    400: "the server rejected the request: check the model name, max_new_tokens and the prompt "
    "length against the server's context window.",
    401: "set {env} to a valid API key for this server (export {env}=...), or pass "
    "api_key_env='NAME' naming the variable that holds it.",
    403: "the key in {env} is not allowed to use this model or endpoint: check its permissions.",
    404: "check base_url (it should end in /v1 or be the server root) and the model name the "
    "server serves (GET <base_url>/models lists them).",
    413: "the prompt is too large for this server: use fewer or shorter exemplars.",
    422: "the server did not accept the request's parameters: check the model name and "
    "max_new_tokens.",
}


class _Retryable(Exception):
    """A failure worth another try: 429, 5xx, a timeout or a dropped connection."""

    def __init__(self, reason: str, status: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status, self.retry_after = reason, status, retry_after


class _Cancelled(Exception):
    """The run was aborted while this request waited: nobody will read its result."""


@dataclass
class HTTPStats:
    """Counts of what happened on the wire, so a notebook can show how flaky a server was.

    ``requests`` counts HTTP attempts, ``retries`` the attempts after the first, ``failures`` the
    requests that still failed after every retry, ``by_status`` each outcome (``"200"``, ``"429"``,
    ``"timeout"``, ``"connect_error"`` ...).
    """

    requests: int = 0
    retries: int = 0
    failures: int = 0
    by_status: Counter = field(default_factory=Counter)


def _parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds, from either form HTTP allows (seconds or a date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _endpoint(base_url: str) -> str:
    """Accept the forms people paste: server root, ``.../v1``, or the full endpoint."""
    url = base_url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


class OpenAIBackend:
    """Any server that speaks OpenAI's ``/v1/chat/completions``: vLLM, llama.cpp, Ollama, APIs.

    Requests run ``concurrency`` at a time (a thread pool over one ``httpx`` client). A 429, a
    5xx, a timeout or a dropped connection is retried up to ``max_retries`` times with exponential
    backoff and jitter (tenacity), waiting what ``Retry-After`` asks for when the server sends it;
    a request that still fails comes back with ``finish_reason="error"``. Any other 4xx means the
    setup is wrong (key, URL, model), so it stops the run at once with the status and the fix. If
    ``max_consecutive_failures`` requests in a row fail after all their retries, the run stops too:
    a server that is down should not make every remaining request wait through its retries.
    ``timeout_s`` is a deadline for each attempt as a whole (connect, response headers and body),
    not per read: a server that sends its answer a byte at a time is cut off when it passes.

    The API key is read from the environment variable named ``api_key_env`` when ``generate`` is
    called, sent only in the ``Authorization`` header, and never kept on the object: ``repr``,
    pickling, logs, results and errors cannot show it (text a server echoes back is redacted).
    A missing key is fine for a server on this machine (127.0.0.1, localhost) and an error
    elsewhere.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_consecutive_failures: int = 8,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"base_url {base_url!r} is not an http(s) URL",
                "pass something like 'http://127.0.0.1:8000/v1'.",
            )
        if parts.username or parts.password:
            raise ConfigError(
                "base_url contains credentials",
                f"remove them from the URL and put the key in the environment variable "
                f"{api_key_env}.",
            )
        if concurrency < 1 or max_retries < 0 or timeout_s <= 0:
            raise ConfigError(
                f"bad OpenAIBackend settings (concurrency={concurrency}, "
                f"max_retries={max_retries}, timeout_s={timeout_s})",
                "use concurrency >= 1, max_retries >= 0 and timeout_s > 0.",
            )
        self.base_url = base_url
        self.url = _endpoint(base_url)
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_consecutive_failures = max_consecutive_failures
        self.is_local = parts.hostname in LOCAL_HOSTS
        self.stats = HTTPStats()
        self._lock = threading.Lock()

    @property
    def batch_size(self) -> int:
        """What the cache hands over at once when it cannot stream (see :meth:`iter_generate`)."""
        return self.concurrency

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(url={self.url!r}, model={self.model!r}, "
            f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock")  # locks cannot be pickled; nothing secret is here either way
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- public --------------------------------------------------------------------------------

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results: list[GenResult | None] = [None] * len(requests)
        for i, res in self.iter_generate(requests):
            results[i] = res
        return [r for r in results if r is not None]

    def iter_generate(self, requests: list[GenRequest]) -> Iterator[tuple[int, GenResult]]:
        """Yield ``(index, result)`` as each request finishes, in completion order.

        The cache uses this to write every result the moment it arrives, and to keep
        ``concurrency`` requests in flight all the time instead of waiting for the slowest of
        each batch.
        """
        prefixed = [i for i, r in enumerate(requests) if r.prefix]
        if prefixed:
            raise ConfigError(
                f"request {prefixed[0]} has a prefix, which a chat API cannot continue",
                "judge with a local model (TransformersBackend), or use a profile whose judge "
                "reasons first (reasoning 'short' or 'full'), whose answers have no prefix.",
            )
        if not requests:
            return
        httpx = _import_http()[0]
        key = self._read_key()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = _Secret(f"Bearer {key}")
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        abort = threading.Event()
        client = httpx.Client(timeout=self.timeout_s, limits=limits)
        _enforce_deadlines(client)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="openai")
        todo = iter(enumerate(requests))
        running: dict[Future, int] = {}
        consecutive = 0
        finished = False

        def submit(item: tuple[int, GenRequest] | None) -> None:
            if item is not None:
                running[pool.submit(self._one, client, headers, key, item[1], abort)] = item[0]

        try:
            # A bounded window of work, not everything at once: on abort or Ctrl-C nothing
            # much is queued, and every finished result is yielded as soon as it is known.
            for _ in range(2 * self.concurrency):
                submit(next(todo, None))
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = running.pop(fut)
                    res = fut.result()  # a setup error (401, 404 ...) propagates from here
                    consecutive = consecutive + 1 if res.finish_reason == "error" else 0
                    yield i, res
                    if consecutive >= self.max_consecutive_failures:
                        raise PersRMError(
                            f"{consecutive} requests in a row to {self.url} failed after "
                            f"{self.max_retries} retries each; the last: {res.error}",
                            "check that the server is up and not overloaded (lower "
                            "concurrency), then run again: finished results are cached.",
                        )
                    submit(next(todo, None))
            finished = True
        finally:
            # On an error or an interrupt, tell the workers to stop at their next attempt or
            # backoff sleep, and do not wait for requests still on the wire.
            abort.set()
            pool.shutdown(wait=finished, cancel_futures=True)
            if finished:
                client.close()

    # -- one request ---------------------------------------------------------------------------

    def _read_key(self) -> str | None:
        """The key, fresh from the environment at every call, checked before any request."""
        raw = (os.environ.get(self.api_key_env) or "").strip()
        key = _Secret(raw) if raw else None
        if key is None and not self.is_local:
            raise ConfigError(
                f"the environment variable {self.api_key_env} is not set, and {self.url} is not "
                "on this machine, so it will want a key",
                f"export {self.api_key_env}=<your key> (in a notebook: os.environ[...] or "
                "Colab's Secrets), or pass api_key_env='NAME' naming the variable that holds it.",
            )
        if key is not None and not key.isascii():
            raise ConfigError(
                f"the value of {self.api_key_env} contains non-ASCII characters, which an HTTP "
                "header cannot carry",
                "copy the key again; a stray quote or space from a word processor is typical.",
            )
        return key

    def _count(self, status: str) -> None:
        with self._lock:
            self.stats.requests += 1
            self.stats.by_status[status] += 1

    def _one(
        self, client: Any, headers: dict, key: str | None, req: GenRequest, abort: threading.Event
    ) -> GenResult:
        """One request through the retry loop; returns a result, or raises a setup error."""
        _, tenacity = _import_http()
        body = {
            "model": self.model,
            "messages": req.messages,
            "max_tokens": req.max_new_tokens,
            "temperature": req.temperature,
            "seed": req.seed,
        }
        backoff = tenacity.wait_exponential_jitter(
            initial=self.backoff_base_s, max=self.backoff_max_s, jitter=self.backoff_base_s
        )

        def wait_for(state: Any) -> float:
            exc = state.outcome.exception()
            if isinstance(exc, _Retryable) and exc.retry_after is not None:
                return exc.retry_after
            return backoff(state)

        def before_sleep(state: Any) -> None:
            with self._lock:
                self.stats.retries += 1
            exc = state.outcome.exception()
            log.info(
                "retrying (attempt %d of %d) after %s",
                state.attempt_number + 1,
                self.max_retries + 1,
                exc.reason if isinstance(exc, _Retryable) else type(exc).__name__,
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=wait_for,
            retry=tenacity.retry_if_exception_type(_Retryable),
            before_sleep=before_sleep,
            sleep=abort.wait,  # a backoff sleep ends at once when the run is aborted
            reraise=True,
        )
        start = time.perf_counter()
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    if abort.is_set():
                        raise _Cancelled
                    attempts += 1
                    text, reason = self._parse(self._post(client, headers, key, body), key)
        except _Retryable as exc:
            with self._lock:
                self.stats.failures += 1
            return GenResult(
                key=req.key,
                text="",
                finish_reason="error",
                backend=self.name,
                model=self.model,
                seconds=time.perf_counter() - start,
                attempts=attempts,
                meta=req.meta,
                error=f"{exc.reason} (after {attempts} attempts)",
            )
        except PersRMError:
            with self._lock:
                self.stats.failures += 1
            raise
        return GenResult(
            key=req.key,
            text=text,
            finish_reason=reason,
            backend=self.name,
            model=self.model,
            seconds=time.perf_counter() - start,
            attempts=attempts,
            meta=req.meta,
        )

    def _post(self, client: Any, headers: dict, key: str | None, body: dict) -> Any:
        """One HTTP attempt: the parsed JSON, or :class:`_Retryable`, or a setup error."""
        httpx, _ = _import_http()
        # timeout_s is a deadline for the whole request: connect, headers and body. httpx's own
        # timeout applies to each socket operation, so a server that sends a few bytes at a time
        # (of its headers or of its body) could hold a request for ever. The deadline is set for
        # this thread, and the client's network layer (see _enforce_deadlines) caps every
        # connect, write and read by the time left, and fails one that starts after it.
        token = _DEADLINE.set(time.monotonic() + self.timeout_s)
        try:
            with client.stream("POST", self.url, json=body, headers=headers) as streamed:
                content = b"".join(streamed.iter_bytes())
            resp = httpx.Response(
                streamed.status_code,
                headers=streamed.headers,
                content=content,
                request=streamed.request,
            )
        except httpx.TimeoutException:
            self._count("timeout")
            raise _Retryable(f"no complete answer within {self.timeout_s} s", "timeout") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            self._count("connect_error")
            reason = f"connection problem with {self.url}: {_redact(str(exc), key)}"
            raise _Retryable(reason, "connect_error") from None
        finally:
            _DEADLINE.reset(token)
        status = resp.status_code
        self._count(str(status))
        if status == 429 or status >= 500:
            retry_after = _parse_retry_after(resp.headers.get("Retry-After"))
            raise _Retryable(f"HTTP {status}: {_snippet(resp, key)}", str(status), retry_after)
        if status >= 400:
            fix = _FIXES.get(status, "check base_url, the model name and the request.")
            raise PersRMError(
                f"{self.url} answered HTTP {status} ({_snippet(resp, key)})",
                fix.format(env=self.api_key_env),
            )
        try:
            return resp.json()
        except ValueError:
            raise _Retryable(f"HTTP {status} with a body that is not JSON", "bad_json") from None

    def _parse(self, data: Any, key: str | None) -> tuple[str, FinishReason]:
        """``choices[0].message.content`` and its finish reason, from the OpenAI JSON shape."""
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError, AttributeError):
            raise PersRMError(
                f"{self.url} answered without choices[0].message.content "
                f"({_redact(json.dumps(data), key)[:200]})",
                "point base_url at an OpenAI-compatible chat completions server.",
            ) from None
        if not isinstance(content, str):
            # content: null happens (a refusal, a tool call, a server hiccup): it is no text, so
            # it is retried and, if it persists, a failed generation that the cache does not keep.
            raise _Retryable(f"the answer had content {json.dumps(content)[:40]}, no text", "null")
        reason: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop"
        return _redact(content, key), reason


class _Secret(str):
    """A string that shows ``'[REDACTED]'`` as its repr.

    The key travels through a few function arguments and a header dict; tracebacks that print
    local variables (pytest's, rich's, error trackers') use ``repr``, so they show this instead.
    """

    def __repr__(self) -> str:
        return repr(REDACTED)


#: Keys shorter than this are placeholders ("EMPTY", "none" for a local vLLM): redacting them
#: would mangle ordinary words in generated text, and they protect nothing.
MIN_REDACTED_KEY_LEN = 8


def _redact(text: str, key: str | None) -> str:
    """Remove the key from anything a server sent back before it can reach a result or error."""
    if key and len(key) >= MIN_REDACTED_KEY_LEN:
        return text.replace(key, REDACTED)
    return text


def _snippet(resp: Any, key: str | None, limit: int = 300) -> str:
    """The start of an error body: servers put the useful sentence there."""
    try:
        data = resp.json()
        msg = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(msg, dict):
            msg = msg.get("message", msg)
        text = msg if isinstance(msg, str) else json.dumps(msg)
    except ValueError:
        text = resp.text
    text = _redact(" ".join(text.split()), key)
    return (text[:limit] + "...") if len(text) > limit else (text or "empty body")


#: When the request running in this thread must be over (``time.monotonic()``), or None.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "persrm_http_deadline", default=None
)


def _capped(timeout: float | None, late: type[Exception]) -> float | None:
    """``timeout`` cut to the time left before this thread's deadline; ``late`` once it passed."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise late("the whole-request deadline passed")
    return left if timeout is None else min(timeout, left)


def _enforce_deadlines(client: Any) -> None:
    """Make every socket operation of ``client`` respect the deadline in :data:`_DEADLINE`.

    httpx has no whole-request timeout for its synchronous client (its maintainers point to
    ``asyncio.wait_for`` for async code), and a per-read timeout never fires against a server
    that sends one byte just in time, again and again. httpcore's network backend is the one
    place every connect, write and read goes through, so it is wrapped here: each operation
    waits at most for the time left, and one that starts after the deadline raises httpcore's
    own timeout, which httpx reports as ``httpx.TimeoutException`` like any other timeout.

    The backend sits on a private attribute of httpx's transport (``_pool._network_backend``,
    the same for direct connections and proxies); if a future httpx moves it, a warning says
    that only per-operation timeouts apply, and the deadline tests fail.
    """
    import httpcore  # httpx's own network layer, installed with it

    transports = [client._transport, *getattr(client, "_mounts", {}).values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        inner = getattr(pool, "_network_backend", None)
        if inner is None:
            if transport is client._transport:
                log.warning(
                    "this httpx version hides its network backend: timeout_s limits each "
                    "read and connect, not the whole request"
                )
            continue
        if not isinstance(inner, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(inner, httpcore)


class _DeadlineStream:
    """A network stream whose every operation ends by the deadline (see _enforce_deadlines)."""

    def __init__(self, inner: Any, httpcore: Any) -> None:
        self._inner, self._httpcore = inner, httpcore

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _capped(timeout, self._httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _capped(timeout, self._httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> _DeadlineStream:
        timeout = _capped(timeout, self._httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, timeout), self._httpcore
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend:
    """httpcore's network backend, opening :class:`_DeadlineStream` connections."""

    def __init__(self, inner: Any, httpcore: Any) -> None:
        self._inner, self._httpcore = inner, httpcore

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        timeout = _capped(timeout, self._httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self._httpcore)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> Any:
        timeout = _capped(timeout, self._httpcore.ConnectTimeout)
        stream = self._inner.connect_unix_socket(path, timeout, socket_options)
        return _DeadlineStream(stream, self._httpcore)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _import_http() -> tuple[Any, Any]:
    """httpx and tenacity, imported on first use so that local backends never need them."""
    try:
        import httpx
        import tenacity
    except ImportError as exc:
        raise ModelUnavailableError(
            f"the OpenAI-compatible backend needs the '{exc.name}' package",
            "pip install httpx tenacity",
        ) from None
    return httpx, tenacity
