"""Peers measured, not assumed: other libraries' own code for the chapter, each in its own virtual environment.

fastai: `run_fastai(seeds)` builds the peers' environment if it is missing (setup.sh: fastai 2.8.12 and the torch
it resolves, in benchmarks/peers/.venv), writes the 3s and 7s as the image folders the book reads (`digitlab data
export`, once, into benchmarks/peers/data-3v7), and runs fastai_resnet.py there; the record is
results/fastai-resnet18.json, which `python -m benchmarks.resnet` reads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER_PYTHON = HERE / ".venv" / "bin" / "python"
DATA = HERE / "data-3v7"
RECORD = HERE.parent / "results" / "fastai-resnet18.json"
SEEDS = [42, 1, 2, 3, 4, 5, 6, 7]


def ensure_peer_env() -> Path:
    """The peers' Python, set up on first use."""
    if not PEER_PYTHON.exists():
        subprocess.run(["bash", str(HERE / "setup.sh")], check=True)
    return PEER_PYTHON


def ensure_folders() -> Path:
    """The book's MNIST_SAMPLE layout (train/3, train/7, valid/3, valid/7), written by our own export command."""
    if not (DATA / "valid" / "7").is_dir():
        subprocess.run([sys.executable, "-m", "digitlab", "data", "export", str(DATA), "--task", "3v7"], check=True)
    return DATA


def run_fastai(seeds: list[int], threads: int = 2, out: Path = RECORD) -> Path:
    """Run fastai's stage per seed in the peers' environment; returns the record's path."""
    cmd = [str(ensure_peer_env()), str(HERE / "fastai_resnet.py"), str(ensure_folders()), "--seeds",
           *map(str, seeds), "--threads", str(threads), "--out", str(out)]
    subprocess.run(cmd, check=True)
    return out
