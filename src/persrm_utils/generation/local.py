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
    """A model in this process: batched greedy decoding and batched, per-request seeded sampling.

    Batches are left padded (a decoder-only model continues from the right end of each row, so the
    padding must sit on the left, with an attention mask) and built from the tokenizer's chat
    template with ``add_generation_prompt=True``. Greedy and sampled requests run in separate
    batches. A sampled row draws its tokens from its own random generator, seeded with its
    request's seed (:class:`_SeededSampler`), not from the stream the batch shares: so a result
    does not depend on which other requests it was batched with, and a GRPO group or a set of
    best-of-N drafts costs one ``generate`` call instead of one per sample.

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
        """Results in the order of ``requests``; batches are formed from prompts of like length.

        A batch is padded to its longest prompt, so mixing short and long prompts spends compute
        on padding: sorting by length cut the padded tokens of run cpu-c's 230 test prompts
        from 86,386 to 77,910 (the real total is 77,240). Greedy and seeded-sampled rows do
        not depend on their batch-mates (up to float rounding), so the order is free to choose.
        """
        results: list[GenResult | None] = [None] * len(requests)
        # the characters the caller wrote: the chat template adds the same few per message, and
        # rendering it here as well as in _generate_batch would template every prompt twice
        length = [sum(len(m["content"]) for m in r.messages) + len(r.prefix) for r in requests]
        by_length = sorted(range(len(requests)), key=lambda i: length[i])
        greedy = [i for i in by_length if requests[i].temperature == 0]
        sampled = [i for i in by_length if requests[i].temperature > 0]
        for start in range(0, len(greedy), self.batch_size):
            idx = greedy[start : start + self.batch_size]
            for i, res in zip(idx, self._run_batch([requests[i] for i in idx]), strict=True):
                results[i] = res
        for start in range(0, len(sampled), self.batch_size):
            idx = sampled[start : start + self.batch_size]
            for i, res in zip(idx, self._run_batch([requests[i] for i in idx]), strict=True):
                results[i] = res
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
        tok = self.tokenizer
        prompts = [prompt_text(tok, r.messages, r.prefix) for r in batch]
        if all(r.max_new_tokens == 1 for r in batch) and len(set(prompts)) < len(prompts):
            return self._one_token_groups(batch, prompts)
        extra: dict[str, Any] = {}
        if batch[0].temperature > 0:
            from transformers import LogitsProcessorList

            sampler = _SeededSampler([r.temperature for r in batch], [r.seed for r in batch])
            extra["logits_processor"] = LogitsProcessorList([sampler])
        longest = max(r.max_new_tokens for r in batch)
        width, out, seconds = self._generate(prompts, longest, batch[0].seed, **extra)
        seconds /= len(batch)
        new_tokens = out[:, width:].tolist()
        return [self._result(req, row, seconds) for req, row in zip(batch, new_tokens, strict=True)]

    def _generate(
        self, prompts: list[str], max_new_tokens: int, seed: int, **extra: Any
    ) -> tuple[int, Any, float]:
        """(prompt width, ``generate``'s output, seconds) for left-padded ``prompts``.

        Greedy search over the scores, in eval mode and with the caller's random state left
        untouched. For sampled rows a :class:`_SeededSampler` in ``extra`` has already left one
        finite score per row, the token it drew, so "greedy" picks exactly that. Plain
        temperature sampling, as the OpenAI API defines it, whatever top-p/top-k the model's own
        generation config suggests: the same request means the same thing on every backend.
        """
        import torch

        tok, model = self.tokenizer, self.hf_model
        # The template already holds any BOS token: adding special tokens again would double it.
        enc = tok(
            prompts,
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        ).to(model.device)
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=_rng_devices(model)), torch.inference_mode():
                torch.manual_seed(seed)
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=self._pad_id,
                    eos_token_id=self._eos_ids,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    **extra,
                )
        finally:
            model.train(was_training)
        return enc["input_ids"].shape[1], out, time.perf_counter() - start

    def _one_token_groups(self, batch: list[GenRequest], prompts: list[str]) -> list[GenResult]:
        """One-token requests that share a prompt: one forward pass per distinct prompt.

        A one-token completion is one draw from the next-token distribution, so a GRPO
        pre-flight group (G samples of the same prompt) needs that distribution once, not G
        times: the cpu pre-flight's 96 samples cost 24 forward passes instead of 96. ``generate``
        runs on the distinct prompts and returns its processed scores (the model's own logits
        processors applied, as on the usual path); each request then draws from them with its
        own seeded generator (:class:`_SeededSampler`) or takes the greedy token, so a request
        gets the token it would get batched with other prompts (up to float rounding).
        """
        row_of = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
        _, out, seconds = self._generate(
            list(row_of), 1, batch[0].seed, output_scores=True, return_dict_in_generate=True
        )
        scores = out.scores[0][[row_of[p] for p in prompts]]
        sampled = [i for i, r in enumerate(batch) if r.temperature > 0]
        tokens = scores.argmax(-1)
        if sampled:
            sampler = _SeededSampler([batch[i].temperature for i in sampled],
                                     [batch[i].seed for i in sampled])  # fmt: skip
            tokens[sampled] = sampler(None, scores[sampled]).argmax(-1)
        seconds /= len(batch)
        return [self._result(req, [int(t)], seconds) for req, t in zip(batch, tokens, strict=True)]

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


class _SeededSampler:
    """A logits processor that samples each row of a batch from its own seeded generator.

    ``generate``'s own sampling draws every row from one shared random stream, so a row's sample
    would depend on the rows batched with it. Here row ``i`` draws its next token from
    softmax(scores / temperature_i) with a ``torch.Generator`` seeded with its request's seed,
    one draw per step, and every other token is set to minus infinity; greedy search then takes
    the drawn token. A request therefore gets the same text alone or in any batch (up to the
    float rounding that left padding brings, as for greedy batches).
    """

    def __init__(self, temperatures: list[float], seeds: list[int]) -> None:
        self.temperatures = temperatures
        self.seeds = seeds
        self.generators: list[Any] | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.generators is None:
            self.generators = [
                torch.Generator(device=scores.device).manual_seed(seed) for seed in self.seeds
            ]
        probs = torch.softmax(
            scores.float() / torch.tensor(self.temperatures, device=scores.device)[:, None], -1
        )
        picked = torch.stack(
            [torch.multinomial(probs[i], 1, generator=g)[0] for i, g in enumerate(self.generators)]
        )
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(scores.shape[0], device=scores.device), picked] = 0.0
        return out


def _rng_devices(model: Any) -> list[int]:
    """CUDA devices whose random state sampling may touch (restored afterwards by fork_rng)."""
    device = getattr(model, "device", None)
    if getattr(device, "type", None) == "cuda":
        return [device.index or 0]
    return []
