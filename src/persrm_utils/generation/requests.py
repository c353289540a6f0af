"""Requests, results, the backend protocol, and the offline backend (mechanics without a model)."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from persrm_utils.errors import ConfigError

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
    the model (the verdict-only judge's fixed tags, :data:`persrm_utils.tags.VERDICT_PREFIX`).
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
