"""A real training process killed mid-epoch (SIGTERM, SIGINT, SIGKILL) resumes to the same weights as a run
that was never interrupted; and the same through a checkpoint file in one process (Learner.state_dict)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import HANG_S, run_env
from test_cli import DIGITLAB, digitlab

from digitlab.data import DataLoader, DataLoaders
from digitlab.train.callback import Callback
from digitlab.train.callbacks import BatchAugment, Recorder
from digitlab.train.checkpoint import Checkpointer, load_checkpoint, restore
from digitlab.train.learner import Learner
from digitlab.train.losses import cross_entropy
from digitlab.train.metrics import accuracy
from digitlab.train.optim import SGD

ARGS = ["--task", "digits", "--model", "mlp", "--epochs", "2", "--bs", "128", "--lr", "0.05", "--seed", "3",
        "--checkpoint-every", "20", "--augment", "--engine", "learner", "-q"]  # augmentation on: its RNG must resume
# too; the Learner engine, whose checkpoints fall mid-epoch (the fast engine's: test_one_loop.py)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    digitlab("train", *ARGS, "--runs", runs, "--name", "full")
    return load_file(runs / "full" / "model.safetensors"), json.loads((runs / "full" / "metrics.json").read_text())


def start(runs, name):
    return subprocess.Popen(DIGITLAB.split() + ["train", *ARGS, "--runs", str(runs), "--name", name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env())


def wait_for_mid_epoch_checkpoint(ckpt, proc, min_step=30, timeout=HANG_S):
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
    out, err = proc.communicate(timeout=HANG_S)
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
    proc.communicate(timeout=HANG_S)
    load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")  # whole: written by rename, never in place
    digitlab("train", "--resume", tmp_path / "run", "-q")
    assert_same_weights(tmp_path / "run", uninterrupted)


def small_learner(cbs=()):
    """A seeded Learner with momentum, augmentation and a one-cycle schedule: all of them must resume exactly."""
    torch.manual_seed(0)
    x, y = torch.rand(96, 1, 28, 28), torch.randint(0, 10, (96,))
    dls = DataLoaders(DataLoader(x, y, 16, shuffle=True, seed=1), DataLoader(x, y, 32))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    return Learner(model, dls, cross_entropy, cbs=[Recorder(), BatchAugment(seed=2), *cbs],
                   opt_func=lambda ps, lr: SGD(ps, lr, mom=0.9), metrics=[accuracy])


class SignalAt(Callback):
    """Plays a SIGTERM arriving during training batch `iter` of `epoch` (the Checkpointer's handler's part)."""
    order = 80  # before the Checkpointer (90) looks at the batch

    def __init__(self, ckpt, epoch, iter):
        self.ckpt, self.epoch, self.iter = ckpt, epoch, iter

    def after_batch(self, learn):
        if learn.training and (learn.epoch, learn.iter) == (self.epoch, self.iter):
            self.ckpt.requested = "SIGTERM"


def test_checkpoint_mid_epoch_restores_through_state_dict_exactly(tmp_path):
    """In one process: a checkpoint written mid-epoch (Learner.state_dict) and restored into a fresh Learner
    (load_state_dict) trains to the same weights, logs and learning rates as a fit never stopped."""
    whole = small_learner()
    whole.fit_one_cycle(3, 0.1)
    path = tmp_path / "checkpoint.safetensors"
    ckpt = Checkpointer(path, handle_signals=False)
    first = small_learner([ckpt, SignalAt(ckpt, 1, 2)])
    first.fit_one_cycle(3, 0.1)
    assert first.interrupted == "SIGTERM" and first.diverged is None
    meta = load_checkpoint(path)[1]
    assert meta["position"] == {"epoch": 1, "iter": 3, "count": 48, "epochs_before": 0}
    second = small_learner([Checkpointer(path, handle_signals=False)])
    restore(second, path)
    assert second.state_dict()["iter"] == 3
    second.fit_one_cycle(3, 0.1)
    assert second.interrupted is None
    for a, b in zip(whole.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    untimed = lambda logs: [{k: v for k, v in log.items() if k != "time"} for log in logs]  # noqa: E731
    assert untimed(second.cbs[0].logs) == untimed(whole.cbs[0].logs) and second.cbs[0].lrs == whole.cbs[0].lrs
    assert load_checkpoint(path)[1]["position"] == {"epoch": 3, "iter": 0, "count": 0, "epochs_before": 0}


def test_a_checkpoint_from_before_epochs_before_still_restores(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    ckpt = Checkpointer(path, handle_signals=False)
    small_learner([ckpt, SignalAt(ckpt, 0, 1)]).fit(2)
    tensors = load_file(path)
    with safe_open(str(path), "pt") as fh:
        meta = json.loads(fh.metadata()["digitlab"])
    del meta["position"]["epochs_before"]  # the position as digitlab-checkpoint-1 files wrote it first
    save_file(tensors, str(path), metadata={"digitlab": json.dumps(meta)})
    learn = small_learner()
    restore(learn, path)
    state = learn.state_dict()
    assert (state["epoch"], state["iter"], state["count"], state["epochs_before"]) == (0, 2, 32, 0)
    assert torch.equal(state["sums"], tensors["learn.sums"])
