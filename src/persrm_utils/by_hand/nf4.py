"""QLoRA's 4-bit storage, opened up: what NF4 stores, and what happens at every matmul.

QLoRA (Dettmers et al., 2023) stores each frozen weight matrix in **NF4**: the weights are cut
into blocks of 64; each block keeps one scale, its absolute maximum (``absmax``), and each
weight keeps a 4-bit index into a fixed code book of 16 values placed at quantiles of a normal
distribution (pretrained weights are roughly normal, so the levels sit where weights are dense).
Nothing is ever computed in 4 bits: for every forward and backward pass the layer
**dequantizes** the weights back to the compute dtype (``code[index] * absmax``) and runs an
ordinary matmul. What is saved is
memory, not arithmetic.

*Double quantization* stores the per-block ``absmax`` themselves in 8 bits (blocks of 256, one
fp32 scale each) instead of fp32: 0.5 bits of overhead per weight become about 0.13. *Paged 8-bit
optimizers* keep Adam's two moments in 8 bits (2 bytes per trained number instead of 8) and, on
CUDA, in memory that can be paged out to the CPU when a long batch spikes GPU memory.

Every function here runs on a CPU in a fraction of a second (bitsandbytes 0.50 has a CPU
backend), so notebook 03 shows each of these facts on real tensors.
"""

from __future__ import annotations

from typing import Any

from persrm_utils.by_hand.lora import init_factors

BLOCKSIZE = 64


def nf4_code_book() -> Any:
    """The 16 values a 4-bit NF4 index can stand for (normalised to [-1, 1])."""
    import bitsandbytes.functional as F

    return F.get_4bit_type("nf4", device="cpu")


def quantize(weight: Any, double_quant: bool = False) -> tuple[Any, Any]:
    """bitsandbytes' own NF4 quantization: (packed 4-bit indices, QuantState)."""
    import bitsandbytes.functional as F

    return F.quantize_4bit(
        weight.detach().float().contiguous(),
        blocksize=BLOCKSIZE,
        quant_type="nf4",
        compress_statistics=double_quant,
    )


def dequantize(packed: Any, state: Any) -> Any:
    import bitsandbytes.functional as F

    return F.dequantize_4bit(packed, state)


def nf4_by_hand(weight: Any) -> tuple[Any, Any, Any]:
    """NF4 written out: (indices, absmax per block, dequantized weight).

    Blocks of 64 consecutive weights; each block divided by its absolute maximum (so it lies in
    [-1, 1]); each weight replaced by the nearest of the 16 code-book values. Dequantizing is one
    lookup and one multiplication.
    """
    code = nf4_code_book()
    blocks = weight.detach().float().flatten().view(-1, BLOCKSIZE)
    absmax = blocks.abs().max(dim=1, keepdim=True).values
    index = ((blocks / absmax).unsqueeze(-1) - code).abs().argmin(dim=-1)
    restored = (code[index] * absmax).view_as(weight)
    return index, absmax.flatten(), restored


def storage_bytes(state: Any, n_weights: int) -> dict[str, float]:
    """Bytes this quantized matrix occupies, read from its QuantState.

    The code books (16 NF4 values; 256 values for the 8-bit second level) are fixed tables shared
    by every layer, so they are not counted per matrix.
    """
    packed = n_weights / 2  # two 4-bit indices per byte
    absmax = state.absmax.numel() * state.absmax.element_size()
    second = 0
    if getattr(state, "nested", False) and state.state2 is not None:
        second = state.state2.absmax.numel() * state.state2.absmax.element_size()
    total = packed + absmax + second
    return {
        "4-bit indices": packed,
        "block scales (absmax)": absmax,
        "second-level scales": second,
        "total": total,
        "bits per weight": 8 * total / n_weights,
        "fp16 would be": 2 * n_weights,
    }


def quantization_table(weight: Any) -> list[dict[str, Any]]:
    """fp16, NF4 and NF4 + double quantization of one matrix: bytes and error, measured."""
    n = weight.numel()
    rows = [{"storage": "fp16", "bytes": 2 * n, "bits per weight": 16.0, "mean abs error": 0.0}]
    for dq in (False, True):
        packed, state = quantize(weight, double_quant=dq)
        size = storage_bytes(state, n)
        error = (dequantize(packed, state) - weight.float()).abs().mean().item()
        rows.append(
            {
                "storage": "NF4 + double quant" if dq else "NF4",
                "bytes": int(size["total"]),
                "bits per weight": round(size["bits per weight"], 3),
                "mean abs error": error,
            }
        )
    return rows


def linear4bit_from(linear: Any) -> Any:
    """A frozen ``bnb.nn.Linear4bit`` (NF4, fp32 compute) holding ``linear``'s weights."""
    import bitsandbytes as bnb
    import torch

    layer = bnb.nn.Linear4bit(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        compute_dtype=torch.float32,
        quant_type="nf4",
    )
    layer.weight = bnb.nn.Params4bit(
        linear.weight.data.clone(), requires_grad=False, quant_type="nf4", blocksize=BLOCKSIZE
    )
    if linear.bias is not None:
        layer.bias = torch.nn.Parameter(linear.bias.data.clone(), requires_grad=False)
    layer = layer.to("cpu")  # quantizes the weights now
    layer.support_avx512bf16_for_cpu = False  # see models._disable_bnb_avx512bf16
    return layer


def forward_is_dequantized_matmul(layer: Any, x: Any) -> float:
    """Largest difference between the 4-bit layer's output and ``x @ dequantize(W).T + b``."""
    weight = dequantize(layer.weight.data, layer.weight.quant_state)
    expected = x @ weight.T + (layer.bias if layer.bias is not None else 0)
    return (layer(x) - expected).abs().max().item()


def gradients_through_4bit(linear: Any, r: int = 4, alpha: float = 8.0, seed: int = 0) -> dict:
    """One backward pass through a frozen NF4 layer with a LoRA adapter beside it.

    Returns which tensors received a gradient. The 4-bit weight gets none (it is not a
    parameter that trains, and its indices could not take a gradient anyway), but the gradient
    flows *through* its dequantized matmul to the input and so to the adapter. At the first step
    ``B = 0``: ``B`` receives a gradient, ``A`` receives exactly zero (``A``'s gradient is
    multiplied by ``B``), which is why the first steps of LoRA move only ``B``.
    """
    import torch

    layer = linear4bit_from(linear)
    factors = init_factors(linear, r, alpha, seed)
    A = torch.nn.Parameter(factors.A.clone())
    B = torch.nn.Parameter(factors.B.clone())
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, linear.in_features, generator=gen, requires_grad=True)
    out = layer(x) + (alpha / r) * (x @ A.T) @ B.T
    out.pow(2).mean().backward()
    return {
        "4-bit weight grad": layer.weight.grad,
        "input grad norm": x.grad.norm().item(),
        "A grad norm (B = 0)": A.grad.norm().item(),
        "B grad norm": B.grad.norm().item(),
    }


def optimizer_bytes(trainable: int) -> dict[str, int]:
    """Adam's state for ``trainable`` numbers: two fp32 moments vs two 8-bit moments.

    Arithmetic, not a measurement: 8-bit Adam also keeps one fp32 scale per block of 2048
    values (negligible), and paging changes where the state lives, not its size.
    """
    return {"Adam, fp32 moments": 8 * trainable, "Adam, 8-bit moments": 2 * trainable}
