"""What QLoRA does to memory, computed from model shapes (no GPU needed).

Full fine-tuning keeps, per parameter: the fp16 weight (2 bytes), its gradient (2), and Adam's
fp32 master copy and two moments (12): about 16 bytes. QLoRA freezes the base model in 4-bit NF4
(about 0.5 byte per weight, plus a small overhead for the quantization constants) and trains only
the LoRA matrices, so the optimizer state shrinks by orders of magnitude. These figures cover
weights and optimizer state; activations come on top and grow with batch size x sequence length
(that is what gradient checkpointing trims).
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1024**3


@dataclass(frozen=True)
class Arch:
    """The shapes that decide parameter counts (from each model's config.json)."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each LoRA target projection in one decoder layer."""
        kv = self.kv_heads * self.head_dim
        return {
            "q_proj": (self.hidden, self.hidden),
            "k_proj": (self.hidden, kv),
            "v_proj": (self.hidden, kv),
            "o_proj": (self.hidden, self.hidden),
            "gate_proj": (self.hidden, self.intermediate),
            "up_proj": (self.hidden, self.intermediate),
            "down_proj": (self.intermediate, self.hidden),
        }

    def embedding_parameters(self) -> int:
        """Input embedding and output head: bitsandbytes keeps these in 16-bit."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def parameters(self) -> int:
        per_layer = sum(i * o for i, o in self.linear_shapes().values()) + 2 * self.hidden
        return self.layers * per_layer + self.embedding_parameters() + self.hidden

    def lora_parameters(self, r: int, targets: tuple[str, ...] | None = None) -> int:
        shapes = self.linear_shapes()
        chosen = targets or tuple(shapes)
        return self.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in chosen)


ARCHS: dict[str, Arch] = {
    "SmolLM2-135M": Arch("SmolLM2-135M", 576, 1536, 30, 9, 3, 49152, True),
    "Qwen2.5-0.5B": Arch("Qwen2.5-0.5B", 896, 4864, 24, 14, 2, 151936, True),
    "Qwen2.5-1.5B": Arch("Qwen2.5-1.5B", 1536, 8960, 28, 12, 2, 151936, True),
    "Qwen2.5-7B": Arch("Qwen2.5-7B", 3584, 18944, 28, 28, 4, 152064, False),
}

NF4_BYTES = 0.5 + 0.5 / 64 * 1.0  # 4 bits + one 8-bit absmax per 64 weights (double-quantized)


def memory_rows(r: int = 16) -> list[dict]:
    """Weights + optimizer state in GB for full fine-tuning, LoRA on fp16, and QLoRA."""
    rows = []
    for arch in ARCHS.values():
        n = arch.parameters()
        lora = arch.lora_parameters(r)
        emb = arch.embedding_parameters()
        lora_state = lora * (2 + 2 + 12)  # weight, grad, Adam (fp32 master + 2 moments)
        rows.append(
            {
                "model": arch.name,
                "parameters (M)": round(n / 1e6),
                f"LoRA r={r} trainable (M)": round(lora / 1e6, 1),
                "trainable %": round(100 * lora / n, 2),
                "full FT (GB)": round(n * 16 / GB, 1),
                "LoRA, fp16 base (GB)": round((n * 2 + lora_state) / GB, 1),
                "QLoRA, NF4 base (GB)": round(
                    ((n - emb) * NF4_BYTES + emb * 2 + lora_state) / GB, 1
                ),
            }
        )
    return rows
