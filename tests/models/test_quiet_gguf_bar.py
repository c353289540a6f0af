"""The GGUF conversion bar obeys TQDM_DISABLE in a notebook kernel.

Run cpu-long-d converted SmolLM2 in notebook 00 on a machine with an empty cache; the executed
copy kept a stalled widget bar ("Converting and de-quantizing GGUF tensors: 0%"), because
``tqdm.notebook`` ignores ``TQDM_DISABLE``, and publishing the run's notebooks was refused.
"""

from __future__ import annotations

import pytest
from tqdm.notebook import tqdm as notebook_tqdm
from transformers import modeling_gguf_pytorch_utils as gguf_utils

from persrm_utils.models.smollm2 import quiet_gguf_bar


def test_notebook_bar_ignores_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reason the context manager exists: if tqdm ever honours the switch, drop it."""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert notebook_tqdm(range(2)).disable is False


def test_the_converter_bar_is_off_inside_and_restored_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")
    before = gguf_utils.tqdm
    with quiet_gguf_bar():
        assert gguf_utils.tqdm(range(2)).disable is True
    assert gguf_utils.tqdm is before


def test_without_the_switch_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    before = gguf_utils.tqdm
    with quiet_gguf_bar():
        assert gguf_utils.tqdm is before
