"""LoRA and NF4 written out by hand agree with peft and bitsandbytes on the same tensors."""

from __future__ import annotations

import pytest
import torch

from persrm_utils.by_hand.lora import (
    init_factors,
    lora_forward,
    merged_weight,
    parameter_counts,
    peft_lora_output,
    random_factors,
    tiny_projection,
)


@pytest.fixture(scope="module")
def proj():
    return tiny_projection(name="gate_proj")  # 64 -> 128: not square, so A and B cannot swap


def test_hand_built_lora_equals_peft_on_the_same_weights(proj):
    x = torch.randn(5, proj.in_features, generator=torch.Generator().manual_seed(1))
    factors = random_factors(proj, r=4, alpha=8.0, seed=2)
    mine = lora_forward(proj, x, factors)
    theirs = peft_lora_output(proj, x, factors)
    assert torch.allclose(mine, theirs, atol=1e-6)
    assert not torch.allclose(mine, proj(x), atol=1e-3)  # the adapter does change the layer


def test_scale_is_alpha_over_r(proj):
    x = torch.randn(3, proj.in_features)
    f = random_factors(proj, r=8, alpha=16.0)
    g = random_factors(proj, r=8, alpha=8.0)
    base = proj(x)
    diff_f, diff_g = lora_forward(proj, x, f) - base, lora_forward(proj, x, g) - base
    assert torch.allclose(diff_f, 2 * diff_g, atol=1e-6)


def test_b_starts_at_zero_so_the_adapter_starts_as_the_base(proj):
    f = init_factors(proj, r=4, alpha=8.0)
    assert f.A.shape == (4, proj.in_features) and f.B.shape == (proj.out_features, 4)
    assert torch.count_nonzero(f.B) == 0 and torch.count_nonzero(f.A) > 0
    x = torch.randn(3, proj.in_features)
    assert torch.equal(lora_forward(proj, x, f), proj(x))
    assert torch.equal(peft_lora_output(proj, x, f), proj(x).detach())


def test_merged_weight_gives_the_same_output(proj):
    f = random_factors(proj, r=4, alpha=8.0)
    x = torch.randn(3, proj.in_features)
    merged = x @ merged_weight(proj, f).T  # gate_proj has no bias
    assert torch.allclose(merged, lora_forward(proj, x, f), atol=1e-5)


def test_parameter_counts(proj):
    counts = parameter_counts(proj, r=4)
    assert counts["full layer"] == 64 * 128
    assert counts["LoRA r=4"] == 4 * (64 + 128)


def test_nf4_by_hand_equals_bitsandbytes():
    from persrm_utils.by_hand.nf4 import dequantize, nf4_by_hand, nf4_code_book, quantize

    code = nf4_code_book()
    assert code.numel() == 16 and code.min() == -1 and code.max() == 1 and 0 in code
    w = torch.randn(128, 64, generator=torch.Generator().manual_seed(0)) * 0.02
    _, absmax, restored = nf4_by_hand(w)
    packed, state = quantize(w)
    assert torch.equal(absmax, state.absmax)
    assert torch.equal(restored, dequantize(packed, state))


def test_double_quant_shrinks_the_scales_and_keeps_the_error():
    from persrm_utils.by_hand.nf4 import quantization_table

    w = torch.randn(256, 256, generator=torch.Generator().manual_seed(0)) * 0.02
    _, nf4, dq = quantization_table(w)
    assert nf4["bits per weight"] == pytest.approx(4.5)
    assert 4.1 < dq["bits per weight"] < 4.2
    assert dq["mean abs error"] == pytest.approx(nf4["mean abs error"], rel=0.05)
    assert 0 < nf4["mean abs error"] < 0.01


def test_linear4bit_forward_is_a_dequantized_matmul_and_passes_gradients():
    from persrm_utils.by_hand.nf4 import (
        forward_is_dequantized_matmul,
        gradients_through_4bit,
        linear4bit_from,
    )

    proj = tiny_projection()
    layer = linear4bit_from(proj)
    assert forward_is_dequantized_matmul(layer, torch.randn(3, proj.in_features)) < 1e-5
    grads = gradients_through_4bit(proj)
    assert grads["4-bit weight grad"] is None
    assert grads["input grad norm"] > 0 and grads["B grad norm"] > 0
    assert grads["A grad norm (B = 0)"] == 0.0
