"""A profile's training mechanics, measured: SFT and GRPO steps, seconds and peak memory.

Used by ``scripts/bench_grpo.py`` and by part 2 of ``scripts/gpu_check.py``. Each backend (plain
TRL + PEFT + bitsandbytes, or Unsloth) runs in its own process, because Unsloth patches TRL and
transformers when it is imported and because peak memory is only clean in a fresh process. The
child runs ``python -m persrm_utils.bench.mechanics SPEC.json`` and writes its figures to the file
the spec names after every phase, so a child killed at its time cap still leaves what it measured.

Speed and memory do not depend on the weights' values, so :func:`random_model_dir` builds a
randomly initialised model of a real architecture (Qwen2.5-1.5B's by default) to measure on a
machine that cannot download the real one. Its tokenizer is the tiny model's, a stand-in: the
prompts are filled to the profile's token lengths with it, and a random model never stops early,
so every completion runs to ``max_completion_length``, the worst case for memory.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from persrm_utils.bench.timebox import Deadline, StepClock, run_capped, write_json_atomic
from persrm_utils.errors import ConfigError
from persrm_utils.judge.format import SYSTEM_PROMPT, format_answer
from persrm_utils.models.loader import add_lora, load_model
from persrm_utils.models.tiny import seed_texts, tiny_model_dir
from persrm_utils.profiles import Profile, get_profile
from persrm_utils.train.grpo import prompt_tokens, train_grpo
from persrm_utils.train.rewards import REWARD_FUNCS
from persrm_utils.train.sft import train_sft

#: Qwen2.5-1.5B-Instruct's architecture (its config.json), for :func:`random_model_dir`.
QWEN25_1_5B: dict[str, Any] = dict(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    tie_word_embeddings=True,
    rope_theta=1_000_000.0,
)
#: A T4 as PyTorch reports it (16 GB board, 14.6 GiB visible); the CUDA context and cuBLAS
#: workspaces (about 0.6 GiB) are not counted by ``max_memory_reserved``, hence 14.0 usable.
T4_USABLE_GIB = 14.0
#: Below this share of a T4's usable memory a recipe "fits with margin": room for longer
#: prompts than the measured ones, fragmentation, and the notebook's other objects.
FIT_MARGIN = 0.85
BACKENDS = ("unsloth", "transformers")


def child_env() -> dict[str, str]:
    """The environment for a child process: this package importable, the hub offline."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def random_model_dir(target: Path, arch: dict[str, Any] | None = None) -> Path:
    """Build (once) a random model of ``arch`` with the tiny tokenizer, in bf16, at ``target``.

    Built on the GPU when there is one (a 1.5B model initialises in seconds there, a minute on a
    few CPU cores) and written through a temporary folder, so an interrupted build leaves nothing.
    """
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir(texts=seed_texts()))
    config = Qwen2Config(
        **(arch or QWEN25_1_5B),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    del model
    return target


def _filler(tokenizer: Any, n_tokens: int) -> str:
    """About ``n_tokens`` tokens of the seed corpus's prose (repeated as needed)."""

    text = " ".join(seed_texts()) or "The market opened higher on Monday. "
    ids: list[int] = []
    while len(ids) < n_tokens:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[: max(1, n_tokens)])


def synthetic_rows(tokenizer: Any, profile: Profile, n: int = 64) -> tuple[list, list]:
    """(SFT rows, GRPO rows) filled to the profile's lengths: the worst case for memory.

    A GRPO prompt, with the chat template applied as the trainer applies it, leaves exactly
    room for ``max_completion_length`` tokens within ``max_seq_length``, and an SFT row is that
    prompt plus an answer of about ``max_completion_length`` tokens. The prompt is measured,
    not estimated: the first GPU check estimated the template's overhead, and the stand-in
    tokenizer split the role names into more pieces than guessed, so every row was 2054 tokens
    against a ``max_seq_length`` of 2048 (:func:`~persrm_utils.train.grpo.check_prompt_lengths`).
    """

    system = {"role": "system", "content": SYSTEM_PROMPT}
    room = profile.max_seq_length - profile.max_completion_length
    fill = max(8, room)
    for _ in range(8):  # decoding and re-encoding a cut can shift a token or two: re-measure
        user = {"role": "user", "content": _filler(tokenizer, fill)}
        over = prompt_tokens(tokenizer, [system, user]) - room
        if over <= 0:
            break
        fill = max(1, fill - over)
    else:
        raise ConfigError(
            f"could not fit a prompt into {room} tokens (max_seq_length "
            f"{profile.max_seq_length} - max_completion_length {profile.max_completion_length})",
            "raise max_seq_length or lower max_completion_length.",
        )
    think = _filler(tokenizer, max(4, profile.max_completion_length - 16))
    sft, grpo = [], []
    for i in range(n):
        letter = "A" if i % 2 else "B"
        answer = {"role": "assistant", "content": format_answer(think, letter)}
        sft.append({"messages": [system, user, answer]})
        grpo.append({"prompt": [system, user], "label": letter})
    return sft, grpo


def guard_embedding_ids(model: Any) -> Any:
    """Make an out-of-range token id a Python error at its call site, not a CUDA assert.

    On a GPU, an id outside the embedding table fails inside the kernel ("device-side assert
    triggered"), reported later and without the frame that passed it: all the first GPU check
    learned of its Unsloth GRPO failure. This forward pre-hook on the input embeddings checks
    every call's ids (one host sync per forward; generation already syncs once per token, so
    the GRPO seconds it adds should be small, not yet measured on a GPU) and raises a
    ValueError with the shape, the ids' range, the table's rows and the Python stack.
    Returns the hook's handle (``.remove()`` takes it off).
    """
    import traceback

    embedding = model.get_input_embeddings()
    rows = int(embedding.weight.shape[0])

    def check(module: Any, args: tuple) -> None:
        ids = args[0] if args else None
        if ids is None or ids.numel() == 0:
            return
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= rows:
            stack = "".join(traceback.format_stack(limit=12)[:-1])
            raise ValueError(
                f"token ids out of range for the input embeddings: min {low}, max {high}, "
                f"table rows {rows}, ids shape {tuple(ids.shape)}; called from:\n{stack}"
            )

    return embedding.register_forward_pre_hook(check)


def vocab_facts(loaded: Any, profile: Profile, prompts: list) -> dict[str, Any]:
    """What decides whether a token id is in range and a row fits, recorded before GRPO.

    The tokenizer's length, the embedding and output tables' rows (and whether they are one
    tensor), the config's vocabulary, the pad and eos ids as the tokenizer, the config and the
    generation config each give them, the model's length limit and the longest GRPO prompt.
    Unsloth and plain TRL each read some of these, so a disagreement is the first suspect.
    """
    model, tok = loaded.model, loaded.tokenizer
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    config = model.config
    gen = getattr(model, "generation_config", None)
    return {
        "len_tokenizer": len(tok),
        "embedding_rows": int(emb.weight.shape[0]),
        "output_rows": int(head.weight.shape[0]) if head is not None else None,
        "tied": bool(head is not None and head.weight.data_ptr() == emb.weight.data_ptr()),
        "config_vocab_size": getattr(config, "vocab_size", None),
        "pad_id": {"tokenizer": tok.pad_token_id, "config": getattr(config, "pad_token_id", None),
                   "generation": getattr(gen, "pad_token_id", None)},
        "eos_id": {"tokenizer": tok.eos_token_id, "config": getattr(config, "eos_token_id", None),
                   "generation": getattr(gen, "eos_token_id", None)},
        "model_max_seq_length": getattr(model, "max_seq_length", None),
        "profile_max_seq_length": profile.max_seq_length,
        "longest_prompt_tokens": max(prompt_tokens(tok, p) for p in prompts),
        "max_completion_length": profile.max_completion_length,
    }  # fmt: skip


def _gib(value: float) -> float:
    return round(value / 1024**3, 3)


def _memory(torch: Any) -> dict[str, Any]:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    out: dict[str, Any] = {"peak_rss_gib": round(rss, 3)}
    if torch.cuda.is_available():
        out["peak_vram_reserved_gib"] = _gib(torch.cuda.max_memory_reserved())
        out["peak_vram_allocated_gib"] = _gib(torch.cuda.max_memory_allocated())
    return out


def _fresh_peak(torch: Any) -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Load, then ``sft_steps`` SFT steps and ``grpo_steps`` GRPO steps, in this process.

    ``spec``: profile, overrides, backend, sft_steps, grpo_steps, result (a JSON path written
    after every phase), seconds (this child's cap; training stops a few seconds before it).
    """
    if spec["backend"] == "unsloth":
        import unsloth  # noqa: F401  (before trl and transformers, so that it can patch them)
    import torch

    deadline = Deadline.after(float(spec.get("seconds", 1e9)) - 5)
    result_path = Path(spec["result"])
    out: dict[str, Any] = {"backend": spec["backend"], "done": False}
    overrides = dict(spec["overrides"], backend=spec["backend"],
                     sft_max_steps=max(1, spec["sft_steps"]),
                     grpo_max_steps=max(1, spec["grpo_steps"]))  # fmt: skip
    profile = get_profile(spec["profile"], **overrides)
    _fresh_peak(torch)
    loaded = load_model(profile)
    out["load"] = {"seconds": round(loaded.seconds, 2), **_memory(torch)}
    out["path"] = loaded.reasons
    write_json_atomic(result_path, out)
    sft_rows, grpo_rows = synthetic_rows(loaded.tokenizer, profile)
    with tempfile.TemporaryDirectory() as tmp:
        if spec["sft_steps"]:
            _fresh_peak(torch)
            clock = StepClock(deadline)
            sft = train_sft(profile, sft_rows, Path(tmp) / "sft", loaded=loaded, resume=False,
                            callbacks=[clock.callback()], save_strategy="no")  # fmt: skip
            out["sft"] = {"steps": sft.steps, **clock.summary(), **_memory(torch)}
            write_json_atomic(result_path, out)
        else:
            add_lora(loaded, profile)
        if spec["grpo_steps"] and not deadline.passed():
            out["grpo_inputs"] = vocab_facts(loaded, profile, [r["prompt"] for r in grpo_rows])
            write_json_atomic(result_path, out)
            guard_embedding_ids(loaded.model)
            _fresh_peak(torch)
            clock = StepClock(deadline)
            grpo = train_grpo(profile, grpo_rows, Path(tmp) / "grpo", REWARD_FUNCS,
                              loaded=loaded, resume=False, callbacks=[clock.callback()],
                              save_strategy="no")  # fmt: skip
            lengths = [h["completions/mean_length"] for h in grpo.history
                       if "completions/mean_length" in h]  # fmt: skip
            out["grpo"] = {"steps": grpo.steps, **clock.summary(), **_memory(torch),
                           "mean_completion_tokens": lengths[-1] if lengths else None}  # fmt: skip
    out["done"] = True
    write_json_atomic(result_path, out)
    return out


def run_backend(
    profile_name: str,
    overrides: dict[str, Any],
    backend: str,
    sft_steps: int,
    grpo_steps: int,
    seconds: float,
    workdir: Path,
) -> dict[str, Any]:
    """:func:`measure` in a child process capped at ``seconds``; status ok/failed/timeout."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = workdir / f"{backend}.json"
    result.unlink(missing_ok=True)
    spec = dict(profile=profile_name, overrides=overrides, backend=backend, sft_steps=sft_steps,
                grpo_steps=grpo_steps, result=str(result), seconds=seconds)  # fmt: skip
    spec_file = workdir / f"{backend}.spec.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    cmd = [sys.executable, "-m", "persrm_utils.bench.mechanics", str(spec_file)]
    log = workdir / f"{backend}.log"  # the child's whole output: a crash's every frame
    run = run_capped(cmd, seconds, env=child_env(), log=log)
    figures = json.loads(result.read_text()) if result.is_file() else {"backend": backend}
    figures["wall_s"] = round(run.seconds, 1)
    if run.timed_out:
        figures |= {"status": "timeout", "error": f"killed at its cap of {seconds:.0f} s"}
    elif run.returncode or not figures.get("done"):
        why = run.failure or "it ended without reporting 'done'"
        figures |= {"status": "failed", "error": why, "log": str(log)}
    else:
        figures["status"] = "ok"
    return figures


def _fit(peak_gib: float | None) -> str | None:
    if peak_gib is None:
        return None
    if peak_gib <= FIT_MARGIN * T4_USABLE_GIB:
        return "fits with margin"
    return "fits, tight" if peak_gib <= T4_USABLE_GIB else "does not fit"


def compare(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Unsloth/plain ratios per phase, and whether each backend's peak fits a T4."""
    out: dict[str, Any] = {}
    plain, fast = results.get("transformers", {}), results.get("unsloth", {})
    for phase in ("sft", "grpo"):
        a, b = plain.get(phase, {}), fast.get(phase, {})
        for key in ("s_per_step", "peak_vram_reserved_gib"):
            if a.get(key) and b.get(key):
                out[f"{phase}_{key}_unsloth_over_plain"] = round(b[key] / a[key], 3)
    for name, r in results.items():
        peaks = [r.get(p, {}).get("peak_vram_reserved_gib") for p in ("load", "sft", "grpo")]
        peaks = [p for p in peaks if p is not None]
        if peaks:
            out[f"{name}_peak_vram_reserved_gib"] = max(peaks)
            out[f"{name}_t4_fit"] = _fit(max(peaks))
    return out


def build_in_child(target: Path, seconds: float) -> Path:
    """:func:`random_model_dir` in a child process, so that the GPU memory and the CUDA context
    it used are given back before the measured processes start (a T4 has none to spare)."""
    cmd = [sys.executable, "-m", "persrm_utils.bench.mechanics", "--build", str(target)]
    run = run_capped(cmd, seconds, env=child_env())
    if run.timed_out or run.returncode or not (target / "config.json").is_file():
        why = "timed out" if run.timed_out else run.stderr[-1500:]
        raise RuntimeError(f"building the random model failed: {why}")
    return target


if __name__ == "__main__":
    if sys.argv[1] == "--build":
        random_model_dir(Path(sys.argv[2]))
    else:
        measure(json.loads(Path(sys.argv[1]).read_text()))
