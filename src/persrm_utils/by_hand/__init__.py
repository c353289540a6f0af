"""The mechanisms written out: LoRA's forward, NF4 storage, QLoRA's memory, GRPO's loss (notebooks
03-04).

The names below are what the notebooks use; everything else is in the modules of this package.
These modules import peft and bitsandbytes inside their functions, often in a solutions notebook
that loads no model first: the known import-time noise (bitsandbytes' note that a CPU kernel
package is absent) is silenced here, once, at its logger.
"""

from persrm_utils.by_hand.grpo_loss import (
    clipped_surrogate,
    clipping_table,
    group_advantages,
    token_weights,
)
from persrm_utils.by_hand.lora import (
    init_factors,
    lora_forward,
    parameter_counts,
    peft_lora_output,
    random_factors,
    tiny_projection,
)
from persrm_utils.by_hand.memory import ARCHS, GB, NF4_BYTES, memory_rows
from persrm_utils.by_hand.nf4 import (
    dequantize,
    forward_is_dequantized_matmul,
    gradients_through_4bit,
    linear4bit_from,
    nf4_by_hand,
    nf4_code_book,
    optimizer_bytes,
    quantization_table,
    quantize,
)
from persrm_utils.by_hand.projections import lesson_projection, real_projection
from persrm_utils.setup.import_order import quiet_known_noise

__all__ = [
    "ARCHS",
    "GB",
    "NF4_BYTES",
    "clipped_surrogate",
    "clipping_table",
    "dequantize",
    "forward_is_dequantized_matmul",
    "gradients_through_4bit",
    "group_advantages",
    "init_factors",
    "lesson_projection",
    "linear4bit_from",
    "lora_forward",
    "memory_rows",
    "nf4_by_hand",
    "nf4_code_book",
    "optimizer_bytes",
    "parameter_counts",
    "peft_lora_output",
    "quantization_table",
    "quantize",
    "random_factors",
    "real_projection",
    "tiny_projection",
    "token_weights",
]

quiet_known_noise()
