"""A model loaded in this process as a generation backend: batched, left padding, OOM-safe."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from persrm_utils.errors import ConfigError, ModelUnavailableError
from persrm_utils.generation.requests import GenRequest, GenResult, prompt_text

log = logging.getLogger(__name__)

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
