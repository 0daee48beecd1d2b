"""One loop: the fast engine is a Learner (train/fast_learner.py). The same fit, events and callbacks as the
chapter's Learner; callbacks that need every batch refused with a reason; the same weights as FastTrainer's own
uninterrupted run; and a real `digitlab train` on the fast engine stopped by SIGTERM, or killed after a
checkpoint, resumed to the very weights of a run that was never stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import HANG_S, run_env
from test_cli import DIGITLAB, digitlab
from test_fast import subset

from digitlab.config import TrainConfig, engine_reason
from digitlab.data.tasks import load_task
from digitlab.errors import ConfigError
from digitlab.train.callback import Callback
from digitlab.train.callbacks import BatchAugment
from digitlab.train.checkpoint import load_checkpoint
from digitlab.train.fast import FastTrainer
from digitlab.train.fit import fit
from digitlab.train.tensorboard import RunWriter, TensorBoardLog

# the fast engine on the 3s and 7s of the ten-digit task: a few seconds an epoch on 2 cores
FAST = ["--engine", "fast", "--classes", "3,7", "--epochs", "3", "--seed", "4", "--no-tta"]


EVENTS = ("before_fit", "before_epoch", "before_train", "before_validate", "after_pass", "after_train",
          "after_validate", "after_epoch", "after_fit", "before_batch", "after_batch")


class EventLog(Callback):
    """Records the events it sees, batch events included (which it may go without)."""
    batch_events_optional = True

    def __init__(self):
        self.events = []


for _name in EVENTS:
    setattr(EventLog, _name, lambda self, learn, _name=_name: self.events.append(_name))


@pytest.fixture(scope="module")
def small():
    return subset(load_task("3v7"), 2048, 500)


def test_the_fast_engine_fires_the_learners_fit_and_epoch_events_and_no_batch_events(small):
    log = EventLog()
    result = fit(TrainConfig(task="3v7", epochs=2, bs=128, engine="fast", device="cpu"), [log], data=small)
    per_epoch = ["before_epoch", "before_train", "after_pass", "after_train", "before_validate", "after_pass",
                 "after_validate", "after_epoch"]
    assert log.events == ["before_fit", *per_epoch, *per_epoch, "after_fit"]
    assert [set(h) for h in result.history] == [{"epoch", "train_loss", "valid_loss", "accuracy", "time"}] * 2
    assert len(result.batch_losses) == len(result.lrs) == 2 * (2048 // 128)  # every step's loss, read per epoch


def test_a_callback_that_needs_every_batch_is_refused_with_the_reason(small):
    cfg = TrainConfig(task="3v7", epochs=1, bs=128, engine="fast", device="cpu")
    with pytest.raises(ConfigError, match=r"BatchAugment hooks into every batch \(before_batch\).*engine learner"):
        fit(cfg, [BatchAugment()], data=small)


def test_fit_on_the_fast_engine_gives_fast_trainers_own_weights(small):
    """The Learner around the fast engine changes no arithmetic: the weights equal FastTrainer.run's, bit for bit."""
    cfg = TrainConfig(task="3v7", epochs=2, bs=128, engine="fast", device="cpu", seed=7)
    through_learner = fit(cfg, data=small).model.state_dict()
    trainer = FastTrainer(cfg, small)
    trainer.run(7)
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, through_learner[name]), name


def test_both_engines_log_the_same_tensorboard_tags(tmp_path, small):
    """Progress, TensorBoard and the NaN guard are the same callbacks on both engines: one epoch each, the same
    event tags (per-step loss and lr, per-epoch metrics), and a loss for every training step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = {}
    for engine in ("learner", "fast"):
        writer = RunWriter(tmp_path / engine)
        summary = fit(TrainConfig(task="3v7", epochs=1, bs=128, engine=engine, device="cpu"), [TensorBoardLog(writer)],
                      data=small).summary
        writer.close()
        assert summary["engine"] == engine and summary["engine_reason"].startswith(f"{engine}: ")  # recorded, and why
        acc = EventAccumulator(str(tmp_path / engine), size_guidance={"tensors": 0})
        acc.Reload()
        tags[engine] = sorted(acc.Tags()["tensors"])
        steps = [e.step for e in acc.Tensors("step/loss")]
        assert steps == list(range(len(steps))) and len(steps) >= 2048 // 128, (engine, steps)
    assert tags["learner"] == tags["fast"] and {"step/loss", "step/lr", "epoch/accuracy"} <= set(tags["fast"])


def test_the_run_records_why_it_trains_on_its_engine():
    """One place decides the engine (TrainConfig.resolve) and the summary says which rule applied."""
    assert TrainConfig.resolve(None).engine == "fast"  # MNIST's default recipe
    adam = TrainConfig.resolve(None, opt="adam", schedule="constant")
    assert adam.engine == "learner" and engine_reason(adam) == ("learner: optimiser adam, schedule constant, which only "
                                                                "the Learner engine runs")
    assert engine_reason(TrainConfig(), world_size=2).startswith("learner: 2 processes")
    assert engine_reason(TrainConfig(engine="learner")).startswith("learner: asked for")


def start(runs, name, *extra):
    return subprocess.Popen(DIGITLAB.split() + ["train", *FAST, *extra, "--runs", str(runs), "--name", name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env())


def wait_for(path, proc):
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)


def same_weights(a, b):
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    digitlab("train", *FAST, "-q", "--runs", runs, "--name", "whole")
    return runs / "whole"


@pytest.mark.slow
def test_sigterm_in_the_second_epoch_of_the_fast_engine_resumes_to_the_same_weights(tmp_path, uninterrupted):
    proc = start(tmp_path, "run")
    header = proc.stdout.readline()  # progress lines (not a terminal): the header, then a row per epoch
    first = proc.stdout.readline()
    assert header.split()[:2] == ["epoch", "train_loss"] and first.split()[0] == "0", (header, first)
    wait_for(tmp_path / "run" / "checkpoint.safetensors", proc)  # the first epoch is over, checkpointed
    time.sleep(0.3)  # past the Checkpointer's look at pending signals (microseconds after its save); an epoch is ~1 s
    proc.send_signal(signal.SIGTERM)  # during the second epoch: it ends at that epoch's end, checkpointed
    out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM; checkpoint saved" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_done"] == 2 and summary["engine"] == "fast"
    resumed = digitlab("train", "--resume", tmp_path / "run", "--json")
    again = json.loads(resumed.stdout)
    assert again["engine"] == "fast" and again["status"] == "finished" and again["epochs_done"] == 3
    same_weights(tmp_path / "run", uninterrupted)
    # the resumed fit's own checkpoints say where it got to (not the point it was resumed from), so it could be
    # stopped and resumed again
    assert load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")[1]["position"]["epoch"] == 3


@pytest.mark.slow
def test_checkpoint_every_on_the_fast_engine_stays_on_it_and_resumes_after_a_kill(tmp_path, uninterrupted):
    proc = start(tmp_path, "run", "--checkpoint-every", "1")
    wait_for(tmp_path / "run" / "checkpoint.safetensors", proc)  # written whole (by rename) after the first epoch
    proc.kill()
    _, err = proc.communicate(timeout=HANG_S)
    assert "checkpoints at each epoch's end" in err  # said, not silently changed
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["engine"] == "fast"
    resumed = json.loads(digitlab("train", "--resume", tmp_path / "run", "--json").stdout)
    assert resumed["engine"] == "fast" and resumed["epochs_done"] == 3
    same_weights(tmp_path / "run", uninterrupted)
