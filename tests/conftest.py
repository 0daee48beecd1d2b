"""Shared fixtures. Every test uses the real MNIST files shipped in the package (src/digitlab/datasets/mnist)."""

from __future__ import annotations

import os

import pytest
import torch

from digitlab.data import load_mnist
from digitlab.hardware import describe_machine

# `make test` runs the suite in one pytest-xdist worker per core. Each worker, and every process a test starts
# (OMP_NUM_THREADS is inherited), then computes on its share of the cores: two workers with two threads each on
# two cores oversubscribe, and OpenMP's waiting threads make both many times slower.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    THREADS = max(1, len(os.sched_getaffinity(0)) // WORKERS)
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    torch.set_num_threads(THREADS)


def pytest_report_header(config):
    """The machine class at the top of every run: tolerances and timings hold per class (AVX2, AVX-512, AMX)."""
    m = describe_machine("cpu")
    workers = config.getoption("numprocesses", None)
    return (f"digitlab machine: {m['cpu_model']}; CPU capability {m['cpu_capability']}, native bf16 "
            f"{m['cpu_native_bf16']}, {m['threads']} threads; precision auto -> {m['precision']} ({m['precision_reason']})"
            f"; pytest-xdist workers: {workers or 'none'} (each with its share of the cores)")


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


# A hang guard for real processes, not a time bar: tests never assert wall-clock time (a slower CPU is no bug),
# but a process that hangs must still end the test. Generous enough for an AVX2-only 2-core machine.
HANG_S = 1800


def run_env(tmp_path=None) -> dict:
    """Environment for CLI subprocesses: no terminal colours, and (optionally) a private cache."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", "TERM": "dumb"}
    if tmp_path is not None:
        env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env
