"""A real training process killed mid-epoch (SIGTERM, SIGINT, SIGKILL) resumes to the same weights as a run
that was never interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_env
from test_cli import DIGITLAB, digitlab

from digitlab.train.checkpoint import load_checkpoint

ARGS = ["--task", "digits", "--model", "mlp", "--epochs", "2", "--bs", "128", "--lr", "0.05", "--seed", "3",
        "--checkpoint-every", "20", "--augment", "-q"]  # augmentation on: its RNG must resume too


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    digitlab("train", *ARGS, "--runs", runs, "--name", "full")
    return load_file(runs / "full" / "model.safetensors"), json.loads((runs / "full" / "metrics.json").read_text())


def start(runs, name):
    return subprocess.Popen(DIGITLAB.split() + ["train", *ARGS, "--runs", str(runs), "--name", name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env())


def wait_for_mid_epoch_checkpoint(ckpt, proc, min_step=30, timeout=120):
    """Block until the checkpoint says training is at least `min_step` steps into an epoch."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"training ended before it could be interrupted: {proc.communicate()}"
        if ckpt.exists():
            try:
                pos = load_checkpoint(ckpt)[1]["position"]
                if pos["iter"] >= min_step or (pos["epoch"] > 0 and pos["iter"] > 0):
                    return pos
            except Exception:
                pass  # the file is being replaced: look again
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no mid-epoch checkpoint appeared in time")


def assert_same_weights(run, uninterrupted):
    weights, metrics = uninterrupted
    resumed = load_file(run / "model.safetensors")
    assert resumed.keys() == weights.keys()
    for k in weights:
        assert torch.equal(resumed[k], weights[k]), k
    assert json.loads((run / "metrics.json").read_text())[-1]["accuracy"] == metrics[-1]["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_checkpoints_and_resume_is_exact(tmp_path, uninterrupted, sig, code):
    proc = start(tmp_path, "run")
    wait_for_mid_epoch_checkpoint(tmp_path / "run" / "checkpoint.safetensors", proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"stopped by {sig.name}; checkpoint saved" in err and "--resume" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    digitlab("train", "--resume", tmp_path / "run", "-q")
    assert_same_weights(tmp_path / "run", uninterrupted)


@pytest.mark.slow
def test_sigkill_leaves_a_whole_checkpoint_and_resume_is_exact(tmp_path, uninterrupted):
    proc = start(tmp_path, "run")
    wait_for_mid_epoch_checkpoint(tmp_path / "run" / "checkpoint.safetensors", proc, min_step=200)
    proc.kill()
    proc.communicate(timeout=30)
    load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")  # whole: written by rename, never in place
    digitlab("train", "--resume", tmp_path / "run", "-q")
    assert_same_weights(tmp_path / "run", uninterrupted)
