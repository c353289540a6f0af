"""One loader for every profile: the tiny model, SmolLM2, and Qwen2.5 through Unsloth.

``load_model(profile)`` is the only place that decides *how* a model is loaded:

* CUDA present and ``unsloth`` installed -> Unsloth's ``FastLanguageModel`` (4-bit QLoRA, its
  fused kernels and gradient checkpointing): the fast path the series is about;
* otherwise -> plain transformers (+ bitsandbytes for 4-bit, + peft for LoRA): slower, but the
  same model, the same adapters, the same trainers.

It always reports which path it took and why, in ``LoadedModel.describe()``, because "is Unsloth
actually on?" is the first question when a run is slower than a tutorial promised.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from persrm_utils.errors import ConfigError, ModelUnavailableError
from persrm_utils.hardware import Hardware, choose_dtype_name, detect
from persrm_utils.models.smollm2 import smollm2_dir
from persrm_utils.models.tiny import CHAT_TEMPLATE, seed_texts, tiny_model_dir
from persrm_utils.profiles import Profile
from persrm_utils.setup.import_order import quiet_known_noise

Backend = Literal["unsloth", "transformers"]


@dataclass
class LoadedModel:
    """A model, its tokenizer, and how they were loaded."""

    model: Any
    tokenizer: Any
    profile: str
    backend: Backend
    source: str
    dtype: str
    load_in_4bit: bool
    seconds: float
    reasons: list[str] = field(default_factory=list)

    def describe(self) -> str:
        quant = "4-bit NF4" if self.load_in_4bit else self.dtype
        params = sum(p.numel() for p in self.model.parameters())
        lines = [
            f"profile '{self.profile}': {self.source}",
            f"backend: {self.backend} ({quant}, {params / 1e6:.1f}M parameters, "
            f"loaded in {self.seconds:.1f} s)",
            *(f"  - {r}" for r in self.reasons),
        ]
        return "\n".join(lines)

    def info(self) -> dict[str, Any]:
        """JSON-safe summary for the manifest."""
        return {
            "profile": self.profile,
            "backend": self.backend,
            "source": self.source,
            "dtype": self.dtype,
            "load_in_4bit": self.load_in_4bit,
            "seconds": round(self.seconds, 2),
            "reasons": self.reasons,
        }


def unsloth_installed() -> bool:
    """Checks for the package without importing it (importing it patches transformers)."""
    return importlib.util.find_spec("unsloth") is not None


def choose_backend(profile: Profile, hw: Hardware) -> tuple[Backend, str]:
    """(backend, reason). Unsloth needs CUDA; it is never taken silently elsewhere."""
    if profile.backend == "transformers":
        return "transformers", "backend='transformers' was asked for"
    if hw.cuda and unsloth_installed():
        return "unsloth", f"CUDA ({hw.gpu_name}) and unsloth are present: Unsloth fast path"
    if profile.backend == "unsloth":
        missing = "a CUDA GPU" if not hw.cuda else "the unsloth package"
        raise ConfigError(
            f"backend='unsloth' was asked for, but this machine lacks {missing}.",
            "Use backend='auto' (Unsloth when possible, transformers otherwise), or on a CUDA "
            "machine `pip install -r requirements/gpu.txt`.",
        )
    if hw.cuda:
        return "transformers", (
            "CUDA is present but unsloth is not installed: plain transformers + peft "
            "(install requirements/gpu.txt for the fast path)"
        )
    return "transformers", "no CUDA GPU: plain transformers + peft (Unsloth needs CUDA)"


def import_backend_first(profile: Profile, hw: Hardware | None = None) -> Backend:
    """Import unsloth now when this profile will train with it; return the backend chosen.

    The one place the series enforces "unsloth before trl, transformers and peft". Unsloth
    patches TRL at ``import unsloth`` by rebinding ``trl.SFTTrainer``, ``trl.GRPOTrainer``,
    ``trl.GRPOConfig``, ... (unsloth 2026.10.9, ``unsloth/models/rl.py``,
    ``patch_trl_rl_trainers``). A trainer or config class looked up *before* that import stays
    TRL's own: the run then takes the plain path with Unsloth's model, or hands a plain
    ``GRPOConfig`` to Unsloth's trainer without its config handling. So every entry point that
    builds a trainer or a trainer config (``train_sft``, ``train_grpo``, ``train_bt``, the stage
    commands, the command line) calls this first, and the package never imports trl at module
    level. (Notebook cells that run before any profile is chosen, such as 03's hand-built
    LoRA, call :func:`persrm_utils.setup.unsloth_first` for the same reason.) Being first, it
    also silences the known library noise before peft imports bitsandbytes.
    """
    quiet_known_noise()
    backend, _ = choose_backend(profile, hw or detect())
    if backend == "unsloth":
        import unsloth  # noqa: F401  (imported for its patching of trl and transformers)
    return backend


#: What ``FastLanguageModel.from_pretrained`` loads for these names in 4-bit (unsloth 2026.10.9,
#: ``unsloth/models/mapper.py``: the "-unsloth-bnb-4bit" dynamic quants), instead of the id asked.
UNSLOTH_4BIT_REPO = {
    "Qwen/Qwen2.5-0.5B-Instruct": "unsloth/Qwen2.5-0.5B-Instruct-unsloth-bnb-4bit",
    "Qwen/Qwen2.5-1.5B-Instruct": "unsloth/Qwen2.5-1.5B-Instruct-unsloth-bnb-4bit",
    "Qwen/Qwen2.5-7B-Instruct": "unsloth/Qwen2.5-7B-Instruct-unsloth-bnb-4bit",
}
#: The same in 16-bit: Unsloth's own copy of the weights.
UNSLOTH_16BIT_REPO = {k: v.removesuffix("-unsloth-bnb-4bit") for k, v in UNSLOTH_4BIT_REPO.items()}


def loaded_repo(profile: Profile, backend: Backend, source: str) -> str:
    """The hub repository whose files will really be read, which is what must be cached offline.

    On the Unsloth path a mapped Qwen2.5 id is swapped for Unsloth's repository (a different
    download); everywhere else it is ``source`` itself.
    """
    if backend != "unsloth" or profile.model_source != "hub" or profile.model_path:
        return source
    table = UNSLOTH_4BIT_REPO if profile.load_in_4bit else UNSLOTH_16BIT_REPO
    return table.get(source, source)


def resolve_source(profile: Profile, texts: list[str] | None = None) -> str:
    """A local folder or hub id to load from; builds/converts the offline models on demand."""
    if profile.model_path:
        path = Path(profile.model_path).expanduser()
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(
                f"model_path '{path}' has no config.json: not a Hugging Face model folder.",
                "Point model_path at the folder that holds config.json and the weights "
                "(what `save_pretrained` or `hf download --local-dir` writes).",
            )
        return str(path)
    if profile.model_source == "tiny":
        corpus = seed_texts() if texts is None else texts
        return str(tiny_model_dir(texts=corpus, seed=profile.seed))
    if profile.model_source == "smollm2":
        return str(smollm2_dir())
    return profile.model_name


def _check_hub_available(model_name: str, asked: str | None = None) -> None:
    """Raise a clear error when a hub model is neither cached nor downloadable.

    ``model_name`` is the repository that will be loaded; ``asked`` the profile's id when the
    backend swaps it for another (Unsloth), so the message explains why a cached ``asked`` is
    not enough.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return
    cached = try_to_load_from_cache(model_name, "config.json")
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if isinstance(cached, str):
        return
    if offline:
        swapped = (
            f" (Unsloth loads it in place of {asked}, so a cached {asked} is not used)"
            if asked and asked != model_name
            else ""
        )
        raise ModelUnavailableError(
            f"{model_name} is not in the local Hugging Face cache{swapped} and HF_HUB_OFFLINE "
            "is set, so it cannot be downloaded.",
            f"On a machine with internet run `hf download {model_name}` and copy the cache "
            "(~/.cache/huggingface) here, or pass model_path=<local folder>, or use the "
            "'smoke' or 'cpu' profile, whose models need no download.",
        )


def _disable_bnb_avx512bf16(model: Any) -> int:
    """Work around a bitsandbytes 0.50 CPU bug; returns how many layers were patched.

    On CPUs with avx512_bf16, after any eval-mode forward (generate, evaluate) the next training
    step fails with "a view of a leaf Variable that requires grad is being used in an in-place
    operation". Turning the bf16 fast path off per layer avoids it.
    """
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def ensure_generation_markers(tokenizer: Any) -> str | None:
    """Give a ChatML tokenizer a template with ``{% generation %}`` markers; say what was done.

    TRL's ``assistant_only_loss`` finds the assistant's tokens through those markers, and
    Qwen2.5's own template has none (TRL then refuses to train). Qwen2.5 and SmolLM2 both speak
    ChatML, so our ChatML template with markers produces the same prompt text whenever a system
    message is given, which the judge always gives.
    """

    template = getattr(tokenizer, "chat_template", None) or ""
    if "{% generation %}" in template or "{%- generation %}" in template:
        return None
    if "<|im_start|>" not in tokenizer.get_vocab():
        return "chat template has no generation markers and the model is not ChatML: " + (
            "assistant-only loss is unavailable"
        )
    tokenizer.chat_template = CHAT_TEMPLATE
    return "ChatML template with {% generation %} markers installed (for assistant-only loss)"


def _load_transformers(profile: Profile, source: str, hw: Hardware) -> tuple[Any, Any, str, list]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reasons: list[str] = []
    dtype_name = choose_dtype_name(hw.compute_capability if hw.cuda else None)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype_name)}
    if profile.load_in_4bit:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ModelUnavailableError(
                f"Profile '{profile.name}' loads the model in 4-bit, which needs bitsandbytes.",
                "`pip install bitsandbytes==0.50.2`, or override load_in_4bit=False.",
            )
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=getattr(torch, dtype_name),
        )
    if hw.cuda:
        kwargs["device_map"] = {"": 0}
    offline = source == profile.model_name and profile.model_source == "hub"
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as err:
        if offline:
            raise ModelUnavailableError(
                f"Could not load {source}: {str(err).splitlines()[0]}",
                f"Download it where there is internet (`hf download {source}`) and copy the "
                "cache here, or pass model_path=<local folder>, or use 'smoke' or 'cpu'.",
            ) from None
        raise
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        reasons.append("tokenizer had no pad token: using the EOS token for padding")
    note = ensure_generation_markers(tokenizer)
    if note:
        reasons.append(note)
    if profile.load_in_4bit and not hw.cuda:
        n = _disable_bnb_avx512bf16(model)
        reasons.append(f"bitsandbytes CPU workaround applied to {n} 4-bit layers")
    return model, tokenizer, dtype_name, reasons


def _load_unsloth(profile: Profile, source: str, hw: Hardware) -> tuple[Any, Any, str, list]:
    # Usually imported already by import_backend_first; importing it again is free.
    import unsloth
    from unsloth import FastLanguageModel

    dtype_name = choose_dtype_name(hw.compute_capability)
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=source,
        max_seq_length=profile.max_seq_length,
        load_in_4bit=profile.load_in_4bit,
        dtype=None,  # Unsloth picks bf16 on Ampere+, fp16 on a T4: the same rule as ours
    )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    reasons = [f"unsloth {getattr(unsloth, '__version__', '?')}"]
    note = ensure_generation_markers(tokenizer)
    return model, tokenizer, dtype_name, reasons + ([note] if note else [])


def load_model(
    profile: Profile, *, texts: list[str] | None = None, hardware: Hardware | None = None
) -> LoadedModel:
    """Load the profile's base model and tokenizer, and say which path was taken.

    ``texts`` only matters for the tiny model: its tokenizer is trained on them (by default the
    built-in seed corpus), so that the smoke profile tokenizes the series' data sensibly.
    """
    quiet_known_noise()  # before bitsandbytes is imported
    hw = hardware or detect()
    backend, why = choose_backend(profile, hw)
    start = time.perf_counter()
    source = resolve_source(profile, texts=texts)
    if profile.model_source == "hub" and not profile.model_path:
        _check_hub_available(loaded_repo(profile, backend, source), asked=source)
    loader = _load_unsloth if backend == "unsloth" else _load_transformers
    model, tokenizer, dtype_name, extra = loader(profile, source, hw)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        profile=profile.name,
        backend=backend,
        source=source,
        dtype=dtype_name,
        load_in_4bit=profile.load_in_4bit,
        seconds=time.perf_counter() - start,
        reasons=[why, *extra],
    )


def release_memory() -> None:
    """Give back the memory of models the caller has just dropped (``del`` every reference first).

    Python frees a model only when its last reference goes; PEFT wrappers and hooks form
    reference cycles, which only the cycle collector breaks, and PyTorch keeps freed CUDA blocks
    cached for itself until ``empty_cache``. Without the three steps, loading the next 7B judge
    stacks it on top of the previous one.
    """
    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just to free nothing
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def lora_config(profile: Profile):
    """The peft ``LoraConfig`` for a profile (the transformers path)."""
    from peft import LoraConfig

    return LoraConfig(
        r=profile.lora_r,
        lora_alpha=profile.lora_alpha,
        lora_dropout=profile.lora_dropout,
        target_modules=list(profile.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def add_lora(loaded: LoadedModel, profile: Profile) -> Any:
    """Wrap the model with trainable LoRA adapters, by the same backend that loaded it."""
    if loaded.backend == "unsloth":
        from unsloth import FastLanguageModel

        loaded.model = FastLanguageModel.get_peft_model(
            loaded.model,
            r=profile.lora_r,
            lora_alpha=profile.lora_alpha,
            lora_dropout=profile.lora_dropout,
            target_modules=list(profile.lora_target_modules),
            use_gradient_checkpointing="unsloth",  # long contexts on small GPUs
            random_state=profile.seed,
        )
        return loaded.model
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    # LoRA's A matrices start random, drawn from the global RNG *before* the trainer seeds it:
    # without this, two runs of the same notebook start from different adapters.
    set_seed(profile.seed)
    if loaded.load_in_4bit:
        loaded.model = prepare_model_for_kbit_training(
            loaded.model, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    loaded.model = get_peft_model(loaded.model, lora_config(profile))
    return loaded.model
