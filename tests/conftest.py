"""Shared fixtures: every test writes its runs into a temporary folder, never into runs/."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    """A private PERSRM_RUNS_DIR for one test."""
    root = tmp_path / "runs"
    monkeypatch.setenv("PERSRM_RUNS_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def smoke_profile():
    from persrm_utils.profiles import get_profile

    return get_profile("smoke")
