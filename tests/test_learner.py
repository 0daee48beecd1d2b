"""The Learner: event order, each cancel level, the Recorder, and training that really learns."""

import pytest
import torch
from torch import nn

from digitlab.data import DataLoader, DataLoaders
from digitlab.train.callbacks import NanGuard, Recorder
from digitlab.train.learner import (Callback, CancelBatchException, CancelEpochException, CancelFitException,
                                    CancelTrainException, CancelValidateException, Learner)
from digitlab.train.losses import mnist_loss
from digitlab.train.metrics import batch_accuracy

EVENTS = ["before_fit", "before_epoch", "before_train", "before_validate", "before_batch", "after_predict",
          "after_loss", "after_backward", "after_step", "after_batch", "after_pass", "after_train", "after_validate",
          "after_epoch", "after_fit", "cleanup_fit", "cleanup_epoch", "cleanup_train", "cleanup_validate",
          "cleanup_batch"]


class Log(Callback):
    """Records every event name; optionally raises `exc` at event `at`."""

    def __init__(self, at=None, exc=None):
        self.events, self.at, self.exc = [], at, exc
        for name in EVENTS:
            setattr(self, name, self.make(name))

    def make(self, name):
        def handler(learn):
            self.events.append(name)
            if name == self.at:
                raise self.exc()
        return handler


def tiny_learner(cbs=(), n=8, bs=4, lr=0.1):
    torch.manual_seed(0)
    x = torch.randn(n, 3)
    y = (x[:, :1] > 0).float()
    dls = DataLoaders(DataLoader(x, y, bs, shuffle=True), DataLoader(x, y, bs))
    return Learner(nn.Linear(3, 1), dls, mnist_loss, lr=lr, cbs=list(cbs), metrics=[batch_accuracy])


def batch_events(training):
    return ["before_batch", "after_predict", "after_loss"] + (["after_backward", "after_step"] if training else []) + \
           ["after_batch", "cleanup_batch"]


def test_events_in_order():
    log = Log()
    tiny_learner([log], n=4, bs=4).fit(1)
    assert log.events == ["before_fit", "before_epoch", "before_train", *batch_events(True), "after_pass",
                          "after_train", "cleanup_train", "before_validate", *batch_events(False), "after_pass",
                          "after_validate",
                          "cleanup_validate", "after_epoch", "cleanup_epoch", "after_fit", "cleanup_fit"]


@pytest.mark.parametrize("level, exc, skipped, still_run", [
    ("fit", CancelFitException, ["after_fit", "before_validate"], ["cleanup_fit", "cleanup_epoch"]),
    ("epoch", CancelEpochException, ["after_epoch", "before_validate"], ["cleanup_epoch", "after_fit"]),
    ("train", CancelTrainException, ["after_train"], ["cleanup_train", "before_validate", "after_epoch"]),
    ("validate", CancelValidateException, ["after_validate"], ["cleanup_validate", "after_epoch"]),
    ("batch", CancelBatchException, ["after_batch"], ["cleanup_batch", "after_train"]),
])
def test_each_cancel_level_skips_its_after_and_runs_its_cleanup(level, exc, skipped, still_run):
    at = "after_loss" if level == "batch" else f"before_{level}" if level in ("train", "validate") else "after_predict"
    log = Log(at=at, exc=exc)
    tiny_learner([log], n=4, bs=4).fit(2)
    for e in skipped:
        assert e not in log.events, e
    for e in still_run:
        assert e in log.events, e
    if level in ("batch", "train", "validate"):
        assert log.events.count("before_epoch") == 2  # only that level was cancelled; the fit went on


def test_recorder_keeps_epochs_and_batches():
    rec = Recorder()
    learn = tiny_learner([rec], n=16, bs=4)
    learn.fit(3)
    assert len(rec.logs) == 3 and len(rec.losses) == 12 and len(rec.lrs) == 12
    assert rec.metric_names == ["train_loss", "valid_loss", "batch_accuracy"]
    assert len(rec.values) == 3 and all(len(v) == 3 for v in rec.values)
    assert learn.log["epoch"] == 2 and learn.cbs == [rec]


def test_fit_really_lowers_the_loss():
    rec = Recorder()
    tiny_learner([rec], n=64, bs=8, lr=1.0).fit(10)
    assert rec.logs[-1]["valid_loss"] < rec.logs[0]["valid_loss"] * 0.8
    assert rec.logs[-1]["batch_accuracy"] >= 0.9


def test_losses_and_metrics_are_weighted_by_batch_size():
    learn = tiny_learner(n=10, bs=4)  # batches of 4, 4, 2
    learn.fit(1, lr=0.0)
    with torch.no_grad():
        x, y = learn.dls.valid.x, learn.dls.valid.y
        assert learn.log["train_loss"] == pytest.approx(mnist_loss(learn.model(x), y).item(), rel=1e-5)  # lr 0
        assert learn.log["valid_loss"] == pytest.approx(mnist_loss(learn.model(x), y).item(), rel=1e-5)
        assert learn.log["batch_accuracy"] == pytest.approx(batch_accuracy(learn.model(x), y).item())


def test_nan_guard_stops_and_says_where():
    learn = tiny_learner([NanGuard()], n=16, bs=4)
    with torch.no_grad():
        learn.model.weight.fill_(float("nan"))
    learn.fit(3)
    assert learn.diverged["epoch"] == 0 and learn.diverged["step"] == 0
