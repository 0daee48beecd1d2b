"""Shared fixtures. Every test uses the real MNIST files shipped in the package (src/digitlab/datasets/mnist)."""

from __future__ import annotations

import os

import pytest
import torch

from digitlab.data import load_mnist


@pytest.fixture(scope="session")
def mnist():
    return load_mnist()


@pytest.fixture(autouse=True)
def exact_matmul():
    """Tests compare with PyTorch to tight tolerances: keep fp32 matmuls in full precision."""
    torch.set_float32_matmul_precision("highest")
    yield


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A fresh digitlab cache, so checksum checks really run."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def run_env(tmp_path=None) -> dict:
    """Environment for CLI subprocesses: no terminal colours, and (optionally) a private cache."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", "TERM": "dumb"}
    if tmp_path is not None:
        env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env
