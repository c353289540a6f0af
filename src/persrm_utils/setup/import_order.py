"""Import order on a GPU: unsloth before the libraries it patches.

Kept apart from :mod:`persrm_utils.setup.import_check` (which runs as ``python -m``) so that
``persrm_utils.setup`` can offer :func:`unsloth_first` to the notebooks.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: Library log messages that say nothing a learner can act on, by the logger that emits them.
#: bitsandbytes 0.50 logs at import, on a CPU with AVX512-BF16, that it cannot fetch an optional
#: fast kernel from the Hub (the ``kernels`` package): it falls back to its ordinary CPU kernel,
#: which the series measured. transformers 5.17 warns that "mtime may not be reliable" whenever
#: two checkpoints were written within a second (a tiny model's steps are that fast) and then
#: orders them by step number, the order the series relies on anyway.
KNOWN_NOISE: dict[str, tuple[str, ...]] = {
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward",),
    "transformers.trainer_utils": ("mtime may not be reliable",),
}


class _DropKnownNoise(logging.Filter):
    """Drops a record whose message starts with one of the given texts; keeps everything else."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet_known_noise() -> None:
    """Silence exactly the messages of :data:`KNOWN_NOISE` (idempotent; imports nothing).

    A logger's filter sees the records logged on that logger, so it is attached to the emitting
    logger itself, before the library is imported: every other warning of those libraries still
    shows.
    """
    for name, prefixes in KNOWN_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownNoise) for f in logger.filters):
            logger.addFilter(_DropKnownNoise(prefixes))


def progress_bars_off() -> bool:
    """Whether ``TQDM_DISABLE`` asks for no progress bars (``persrm run`` sets it in its kernels).

    tqdm applies the switch only to bars made without an explicit ``disable``, and never to the
    widget bars of ``tqdm.notebook``; code that passes ``disable``, or meets a notebook bar,
    asks here.
    """
    return os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true")


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
    on a CPU (or without unsloth) it does nothing and imports nothing but torch. It also
    silences the known library noise (:func:`quiet_known_noise`), before those imports.
    """
    quiet_known_noise()
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
