"""Import order on a GPU: unsloth before the libraries it patches.

Kept apart from :mod:`persrm_utils.setup.import_check` (which runs as ``python -m``) so that
``persrm_utils.setup`` can offer :func:`unsloth_first` to the notebooks.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from typing import Any


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (imports torch)."""
    import torch

    return bool(torch.cuda.is_available())


#: The libraries unsloth patches; imported before it, they run unpatched and unsloth warns that
#: training "may be slower".
PATCHED_BY_UNSLOTH = ("transformers", "trl", "peft")


def unsloth_first(
    cuda: bool | None = None,
    importer: Callable[[str], Any] = importlib.import_module,
    loaded: Sequence[str] | None = None,
) -> str:
    """Import unsloth now when CUDA and unsloth are both here; say what was done and why.

    A notebook that builds LoRA or NF4 by hand imports transformers, peft and bitsandbytes long
    before ``load_model`` imports unsloth; on a GPU unsloth then warns that it was imported too
    late and may be slower. Called first thing, before those imports, this keeps a GPU run clean;
    on a CPU (or without unsloth) it does nothing and imports nothing but torch.
    """
    if importlib.util.find_spec("unsloth") is None:
        return "unsloth is not installed: plain transformers + peft"
    if cuda is None:
        cuda = cuda_available()
    if not cuda:
        return "no CUDA GPU: unsloth is not used here"
    present = set(sys.modules if loaded is None else loaded)
    early = [m for m in PATCHED_BY_UNSLOTH if m in present]
    importer("unsloth")
    if early:
        return (
            f"unsloth imported after {', '.join(early)}: restart the runtime and run from the "
            "top, so that it comes first"
        )
    return "unsloth imported first, before transformers, trl and peft"
