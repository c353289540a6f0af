"""One way to ask a model for text, three places to get it from.

Three stages of the series generate text: synthetic negatives (notebook 02), teacher reasoning
traces (03) and the judge's verdicts (05). They should not care *where* the text comes from, so
every one of them builds a list of :class:`GenRequest` and hands it to a :class:`Backend`:

* :class:`TransformersBackend`: a model loaded in this process (batched, left padding), the
  default on a laptop or a Colab GPU;
* :class:`OpenAIBackend`: any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, llama.cpp
  server, Ollama, hosted APIs), with concurrency, timeouts and retries, the key read from the
  environment only;
* :class:`OfflineBackend`: no model at all, deterministic text for the smoke profile (mechanics
  only: its text means nothing).

Results come back as :class:`GenResult` in request order. Backends do not cache: wrap one in
:class:`persrm_utils.gencache.CachedGenerator` to make a long run resumable.

Heavy imports (torch, transformers, httpx, tenacity) happen inside the backend that needs them, so
importing this module costs nothing and the offline path runs without any of them.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from persrm_utils.errors import ConfigError, ModelUnavailableError, PersRMError

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "error"]

#: Version of the key recipe: bump it if what goes into :attr:`GenRequest.key` ever changes, so old
#: cache entries are regenerated instead of being served for a request they no longer describe.
KEY_VERSION = 1


# ----------------------------------------------------------------------------------------------
# Requests and results
# ----------------------------------------------------------------------------------------------


def prompt_text(tokenizer: Any, messages: list[dict[str, str]], prefix: str = "") -> str:
    """The text a local model continues: the chat template with a generation prompt, then
    ``prefix`` (the start of the answer the caller writes). Generation, SFT on prefilled rows and
    GRPO's text prompts all build it here, so the judge is trained on exactly what it is asked."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + prefix


@dataclass(frozen=True, eq=True)
class GenRequest:
    """One chat to complete.

    ``messages`` is the chat format every backend understands (``{"role", "content"}`` dicts).
    ``temperature == 0`` means greedy decoding; above it, ``seed`` fixes the sample, so a request
    is a complete description of its output and can be cached. Two requests that differ only in
    ``meta`` are the same request: ``meta`` rides along to the result (a pair id, a negative type)
    but never changes the text. To draw several different samples of one chat, vary ``seed``.

    ``prefix`` is text the assistant's turn starts with, written by the caller and continued by
    the model (the verdict-only judge's fixed tags, :data:`persrm_utils.judge.VERDICT_PREFIX`).
    The result's ``text`` is the continuation only. Local models support it; a chat API does not.
    """

    messages: list[dict[str, str]]
    max_new_tokens: int
    temperature: float = 0.0
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    prefix: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.messages, list | tuple) or not self.messages:
            raise ConfigError(
                "a GenRequest needs a non-empty list of chat messages",
                'pass messages=[{"role": "user", "content": "..."}].',
            )
        for i, msg in enumerate(self.messages):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
                raise ConfigError(
                    f"message {i} is not a chat message ({msg!r:.80})",
                    'each message must be a dict like {"role": "user", "content": "..."}.',
                )
            if not isinstance(msg.get("content"), str):
                raise ConfigError(
                    f"message {i} has no text 'content' ({msg!r:.80})",
                    "give every message a 'content' string (it may be empty).",
                )
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise ConfigError(
                f"max_new_tokens must be an int, got {self.max_new_tokens!r}",
                "pass a whole number of tokens.",
            )
        if self.max_new_tokens < 1:
            raise ConfigError(
                f"max_new_tokens must be at least 1, got {self.max_new_tokens}",
                "ask for at least one new token.",
            )
        if not isinstance(self.prefix, str):
            raise ConfigError(
                f"prefix must be a str, got {type(self.prefix).__name__}",
                "pass the text the assistant's turn starts with, or leave it empty.",
            )
        if not self.temperature >= 0:  # also rejects NaN
            raise ConfigError(
                f"temperature must be >= 0, got {self.temperature}",
                "use 0 for greedy decoding or a positive value to sample.",
            )
        # Copies, so a caller who later edits their list or dicts cannot change a request (and
        # its key) after the fact; floats, so temperature=0 and 0.0 give the same key.
        object.__setattr__(self, "messages", [dict(m) for m in self.messages])
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "meta", dict(self.meta))
        try:  # meta is written to the cache: fail now, not after the text was generated
            json.dumps(self.meta)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"meta is not JSON-serialisable ({exc})",
                "keep meta to strings, numbers, lists and dicts (ids, not objects).",
            ) from None

    @property
    def key(self) -> str:
        """SHA-256 of everything that decides the output: messages, lengths, temperature, seed.

        Canonical JSON (sorted keys, no whitespace) makes it the same in every process and on
        every machine. The model is the other half of a cache entry's identity: the cache stores
        ``(key, backend.model)``, so switching models never serves another model's text.
        """
        payload = {
            "v": KEY_VERSION,
            "messages": self.messages,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
        }
        if self.prefix:  # only when set, so the keys of every earlier cache stay valid
            payload["prefix"] = self.prefix
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def __hash__(self) -> int:
        # Equal requests have equal keys (meta is left out of both), so they hash alike.
        return hash(self.key)

    def last_user_message(self) -> str:
        """The content of the last ``user`` message (empty if there is none)."""
        for msg in reversed(self.messages):
            if msg.get("role") == "user":
                return msg["content"]
        return ""


class GenResult(BaseModel):
    """What came back for one request, one JSONL line of the cache.

    ``finish_reason`` is ``"stop"`` (the model ended its turn), ``"length"`` (it hit
    ``max_new_tokens``: the text may be cut mid-sentence, which matters for a judge's verdict) or
    ``"error"`` (a remote request failed after every retry; ``error`` says why, and the cache does
    not keep it, so the next run tries again). ``seconds`` is this request's share of the wall time
    of the batch it ran in; ``attempts`` counts HTTP tries (1 for local backends).
    """

    model_config = ConfigDict(extra="forbid")

    key: str
    text: str
    finish_reason: FinishReason
    backend: str
    model: str
    seconds: float = 0.0
    attempts: int = 1
    meta: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


@runtime_checkable
class Backend(Protocol):
    """Anything that turns requests into results, in the same order.

    ``name`` says which kind of backend made a result; ``model`` names the weights and is part of
    the cache identity, so it must change whenever the weights do. ``batch_size`` is how many
    requests the cache hands over at once (and so the most a killed process can lose).
    """

    name: str
    model: str
    batch_size: int

    def generate(self, requests: list[GenRequest]) -> list[GenResult]: ...


# ----------------------------------------------------------------------------------------------
# Offline: mechanics without a model
# ----------------------------------------------------------------------------------------------


def scramble_last_user_message(request: GenRequest) -> str:
    """Deterministic filler: the words of the last user message, shuffled with the request's key.

    It gives the smoke profile varied, repeatable text of a plausible length without any model
    (at most ``max_new_tokens`` words). It is not a style: nothing learned from it means anything.
    """
    words = request.last_user_message().split() or ["(empty)"]
    rng = random.Random(int(request.key[:16], 16))
    rng.shuffle(words)
    return " ".join(words[: request.max_new_tokens])


class OfflineBackend:
    """A deterministic stand-in for a model, **for mechanics only** (the smoke profile, tests).

    ``fn(request) -> str`` makes each text; the default, :func:`scramble_last_user_message`,
    shuffles the words of the last user message with a seed taken from the request key, so the
    same request always gets the same text and different requests get different ones. ``name`` is
    also the model name, so two offline functions with different names never share cache entries.
    """

    def __init__(
        self,
        fn: Callable[[GenRequest], str] | None = None,
        name: str = "offline",
        batch_size: int = 16,
    ) -> None:
        self.fn = fn
        self.name = name
        self.model = name
        self.batch_size = batch_size

    def __repr__(self) -> str:
        fn = getattr(self.fn, "__name__", repr(self.fn)) if self.fn else "scramble"
        return f"OfflineBackend(name={self.name!r}, fn={fn})"

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results = []
        for req in requests:
            start = time.perf_counter()
            if self.fn is None:
                text = scramble_last_user_message(req)
                # Like a model, say so when the text was cut at max_new_tokens (here: words).
                cut = len(req.last_user_message().split()) > req.max_new_tokens
                reason: FinishReason = "length" if cut else "stop"
            else:
                text, reason = self.fn(req), "stop"
            results.append(
                GenResult(
                    key=req.key,
                    text=text,
                    finish_reason=reason,
                    backend=self.name,
                    model=self.model,
                    seconds=time.perf_counter() - start,
                    meta=req.meta,
                )
            )
        return results


# ----------------------------------------------------------------------------------------------
# Local transformers model
# ----------------------------------------------------------------------------------------------


def _model_name(model: Any) -> str:
    """A name for the weights that is the same on every machine.

    A hub id is kept as it is; a local folder (the tiny model, a converted SmolLM2) is named by
    its last path component, which for the tiny model carries a hash of how it was built.
    """
    raw = str(getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", ""))
    if raw and os.path.isdir(raw):
        return os.path.basename(os.path.normpath(raw))
    return raw or type(model).__name__


class TransformersBackend:
    """A model in this process: batched greedy decoding, or seeded sampling one at a time.

    Batches are left padded (a decoder-only model continues from the right end of each row, so the
    padding must sit on the left, with an attention mask) and built from the tokenizer's chat
    template with ``add_generation_prompt=True``. Greedy requests are batched; sampled requests
    run one at a time under their own seed, because a batch shares one random stream and a result
    would otherwise depend on which other requests it happened to be batched with.

    ``model_name`` overrides the name used in the cache identity; pass it whenever the weights in
    memory differ from what their name says (a LoRA adapter, a fine-tuned checkpoint), or the cache
    will serve the base model's answers.
    """

    name = "transformers"

    def __init__(
        self, model: Any, tokenizer: Any, batch_size: int = 8, model_name: str | None = None
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}", "use 1 or more.")
        if model_name is None and getattr(model, "peft_config", None):
            raise ConfigError(
                "this model carries a LoRA adapter, so its base model's name does not identify "
                "its outputs and cached answers of the base model would be reused",
                "pass model_name='<base>+<adapter name or step>' to TransformersBackend.",
            )
        if getattr(tokenizer, "chat_template", None) is None:
            raise ConfigError(
                "the tokenizer has no chat template, so chat messages cannot be turned into a "
                "prompt",
                "use an instruct/chat model, or set tokenizer.chat_template before generating.",
            )
        self.hf_model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.model = model_name or _model_name(model)
        self._pad_id = tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = tokenizer.eos_token_id
        self._eos_ids = self._collect_eos_ids()

    def __repr__(self) -> str:
        return f"TransformersBackend(model={self.model!r}, batch_size={self.batch_size})"

    def _collect_eos_ids(self) -> list[int]:
        """Every token that ends a turn: the generation config's (often several) and the
        tokenizer's. Qwen2.5-Instruct, for one, ends on either ``<|im_end|>`` or
        ``<|endoftext|>``."""
        ids: list[int] = []
        cfg_eos = getattr(getattr(self.hf_model, "generation_config", None), "eos_token_id", None)
        for value in (cfg_eos, self.tokenizer.eos_token_id):
            for i in value if isinstance(value, list | tuple) else [value]:
                if i is not None and int(i) not in ids:
                    ids.append(int(i))
        if not ids:
            raise ConfigError(
                "neither the tokenizer nor the model's generation config names an end-of-turn "
                "token, so generation could never report 'stop'",
                "set tokenizer.eos_token (for ChatML models: '<|im_end|>').",
            )
        return ids

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results: list[GenResult | None] = [None] * len(requests)
        greedy = [i for i, r in enumerate(requests) if r.temperature == 0]
        sampled = [i for i, r in enumerate(requests) if r.temperature > 0]
        for start in range(0, len(greedy), self.batch_size):
            idx = greedy[start : start + self.batch_size]
            for i, res in zip(idx, self._run_batch([requests[i] for i in idx]), strict=True):
                results[i] = res
        for i in sampled:
            results[i] = self._run_batch([requests[i]])[0]
        return [r for r in results if r is not None]

    def _run_batch(self, batch: list[GenRequest]) -> list[GenResult]:
        """Generate one batch; on CUDA out-of-memory, split it in half and try each half."""
        import torch

        try:
            return self._generate_batch(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise ModelUnavailableError(
                    f"out of GPU memory generating one request of {batch[0].max_new_tokens} "
                    "new tokens",
                    "lower max_new_tokens, shorten the prompt, or use a smaller profile.",
                ) from None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.warning("out of memory on a batch of %d: retrying in halves", len(batch))
            half = len(batch) // 2
            return self._run_batch(batch[:half]) + self._run_batch(batch[half:])

    def _generate_batch(self, batch: list[GenRequest]) -> list[GenResult]:
        import torch

        tok, model = self.tokenizer, self.hf_model
        prompts = [prompt_text(tok, r.messages, r.prefix) for r in batch]
        # The template already holds any BOS token: adding special tokens again would double it.
        enc = tok(
            prompts,
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        ).to(model.device)
        longest = max(r.max_new_tokens for r in batch)
        temperature = batch[0].temperature
        kwargs: dict[str, Any] = dict(
            max_new_tokens=longest,
            pad_token_id=self._pad_id,
            eos_token_id=self._eos_ids,
        )
        if temperature > 0:
            # Plain temperature sampling, as the OpenAI API defines it, whatever top-p/top-k the
            # model's own generation config suggests: the same request means the same thing on
            # every backend.
            kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=_rng_devices(model)), torch.inference_mode():
                torch.manual_seed(batch[0].seed)
                out = model.generate(**enc, **kwargs)
        finally:
            model.train(was_training)
        seconds = (time.perf_counter() - start) / len(batch)
        new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()
        return [self._result(req, row, seconds) for req, row in zip(batch, new_tokens, strict=True)]

    def _result(self, req: GenRequest, row: list[int], seconds: float) -> GenResult:
        """Cut one row at its first end-of-turn token (or its own length limit) and decode it.

        Rows of a batch share the longest ``max_new_tokens``; greedy decoding is the same
        token by token however long it runs, so cutting each row at its own limit gives exactly
        what that request alone would have produced.
        """
        row = row[: req.max_new_tokens]
        stop = next((j for j, t in enumerate(row) if t in self._eos_ids), None)
        if stop is not None:
            row, reason = row[:stop], "stop"
        else:
            reason = "length"
        text = self.tokenizer.decode(row, skip_special_tokens=True)
        return GenResult(
            key=req.key,
            text=text,
            finish_reason=reason,
            backend=self.name,
            model=self.model,
            seconds=seconds,
            meta=req.meta,
        )


def _rng_devices(model: Any) -> list[int]:
    """CUDA devices whose random state sampling may touch (restored afterwards by fork_rng)."""
    device = getattr(model, "device", None)
    if getattr(device, "type", None) == "cuda":
        return [device.index or 0]
    return []


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
        # timeout_s is a deadline for the whole request. httpx's own timeout applies to each
        # read, so a server that sends a few bytes at a time could hold a request for ever; the
        # body is therefore read in chunks and the clock checked after each one.
        deadline = time.monotonic() + self.timeout_s
        try:
            with client.stream("POST", self.url, json=body, headers=headers) as streamed:
                chunks = []
                for chunk in streamed.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("deadline passed while reading the body")
            resp = httpx.Response(
                streamed.status_code,
                headers=streamed.headers,
                content=b"".join(chunks),
                request=streamed.request,
            )
        except httpx.TimeoutException:
            self._count("timeout")
            raise _Retryable(f"no complete answer within {self.timeout_s} s", "timeout") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            self._count("connect_error")
            reason = f"connection problem with {self.url}: {_redact(str(exc), key)}"
            raise _Retryable(reason, "connect_error") from None
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
