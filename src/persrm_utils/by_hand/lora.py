"""LoRA by hand: the adapter peft adds, written out on one real projection.

LoRA (Hu et al., 2021) freezes a linear layer's weight ``W`` (shape ``out x in``) and learns a
low-rank change beside it::

    h = W x + b + (alpha / r) * B (A x)        A: r x in,  B: out x r

Only ``A`` and ``B`` are trained: ``r * (in + out)`` numbers instead of ``in * out``. ``A`` starts
random and ``B`` starts at exactly zero, so at the first step the adapted layer *is* the base layer
(``B A = 0``) and training starts from the pretrained model, not from a perturbed one. The scale
``alpha / r`` keeps the size of the update roughly independent of the rank, so changing ``r``
does not force a new learning rate.

:func:`lora_forward` is the formula above; :func:`peft_lora_output` builds peft's own
``LoraLayer`` on the same ``nn.Linear``, copies in the same ``A`` and ``B`` and returns its output,
so notebook 03 and the tests can show the two agree.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from persrm_utils.models.tiny import seed_texts, tiny_model_dir


@dataclass
class LoraFactors:
    """The two trainable matrices of one adapter and its scale."""

    A: Any  # torch.Tensor, r x in
    B: Any  # torch.Tensor, out x r
    alpha: float
    r: int

    @property
    def scale(self) -> float:
        return self.alpha / self.r


def tiny_projection(layer: int = 0, name: str = "q_proj", seed: int = 0) -> Any:
    """A real ``nn.Linear``: a projection of the smoke profile's tiny Qwen2 (cached on disk).

    The tiny model has random weights, but its projections are the same modules as Qwen2.5's
    (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``; ``gate_proj``, ``up_proj``, ``down_proj``),
    only smaller: what LoRA does to one is what it does to all.
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir(texts=seed_texts(), seed=seed))
    block = model.model.layers[layer]
    module = getattr(block.self_attn, name, None) or getattr(block.mlp, name)
    return module


def init_factors(linear: Any, r: int, alpha: float, seed: int = 0) -> LoraFactors:
    """``A`` drawn as peft draws it (Kaiming-uniform, a = sqrt(5)), ``B`` all zeros."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    fan_in = linear.in_features
    # kaiming_uniform_ with a = sqrt(5): bound = sqrt(6 / ((1 + a^2) * fan_in)) = 1 / sqrt(fan_in)
    bound = 1.0 / math.sqrt(fan_in)
    A = (torch.rand(r, fan_in, generator=gen) * 2 - 1) * bound
    B = torch.zeros(linear.out_features, r)
    return LoraFactors(A=A, B=B, alpha=alpha, r=r)


def random_factors(linear: Any, r: int, alpha: float, seed: int = 0) -> LoraFactors:
    """Both matrices random: an adapter as it looks after some training (B no longer zero)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(r, linear.in_features, generator=gen) * 0.1
    B = torch.randn(linear.out_features, r, generator=gen) * 0.1
    return LoraFactors(A=A, B=B, alpha=alpha, r=r)


def lora_forward(linear: Any, x: Any, factors: LoraFactors) -> Any:
    """``W x + b + (alpha / r) * B (A x)``, written with the frozen layer and two matmuls."""
    base = linear(x)  # W x + b: the frozen weights (in QLoRA, dequantized from NF4 here)
    update = (x @ factors.A.T) @ factors.B.T  # B (A x): never forms the out x in matrix B A
    return base + factors.scale * update


def merged_weight(linear: Any, factors: LoraFactors) -> Any:
    """``W + (alpha / r) * B A``: what ``merge_and_unload`` writes back after training."""
    return linear.weight.detach() + factors.scale * (factors.B @ factors.A)


def peft_lora_output(linear: Any, x: Any, factors: LoraFactors) -> Any:
    """peft's ``LoraLayer`` on the same layer, with ``A`` and ``B`` copied in: its output.

    The layer is wrapped in a one-module model and adapted by ``get_peft_model`` exactly as the
    series adapts its models (``models.lora_config``), with dropout 0 so the output is exact.
    """

    import torch
    from peft import LoraConfig, get_peft_model

    class One(torch.nn.Module):
        def __init__(self, proj: Any) -> None:
            super().__init__()
            self.proj = proj

        def forward(self, inputs: Any) -> Any:
            return self.proj(inputs)

    config = LoraConfig(
        r=factors.r, lora_alpha=factors.alpha, lora_dropout=0.0, target_modules=["proj"]
    )
    model = get_peft_model(One(copy.deepcopy(linear)), config)
    layer = model.base_model.model.proj
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(factors.A)
        layer.lora_B["default"].weight.copy_(factors.B)
    model.eval()
    with torch.no_grad():
        return model(x)


def parameter_counts(linear: Any, r: int) -> dict[str, float]:
    """Trainable numbers: the full layer vs its LoRA adapter of rank ``r``."""
    full = linear.in_features * linear.out_features
    lora = r * (linear.in_features + linear.out_features)
    return {"full layer": full, f"LoRA r={r}": lora, "share (%)": round(100 * lora / full, 2)}
