"""The Learner: event order, each cancel level, the Recorder, and training that really learns."""

import pytest
import torch
from torch import nn

from digitlab.data import DataLoader, DataLoaders
from digitlab.train.callbacks import NanGuard, Recorder
from digitlab.train.callback import (Callback, CancelBatchException, CancelEpochException, CancelFitException,
                                     CancelTrainException, CancelValidateException)
from digitlab.train.learner import Learner
from digitlab.train.losses import mnist_loss
from digitlab.train.metrics import batch_accuracy
from digitlab.train.optim import SGD

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


def test_a_fresh_learner_declares_what_callbacks_set_and_stands_at_the_start():
    learn = tiny_learner()
    assert learn.diverged is None and learn.interrupted is None and learn.step_offset == 0
    state = learn.state_dict()
    assert {k: state[k] for k in ("epoch", "iter", "count", "epochs_before")} == {
        "epoch": 0, "iter": 0, "count": 0, "epochs_before": 0}
    assert torch.equal(state["sums"], torch.zeros(1))


class StopAt(Callback):
    """Cancels the fit after training batch `iter` of `epoch`, keeping the Learner's state_dict from there."""
    order = 95

    def __init__(self, epoch, iter):
        self.epoch, self.iter, self.state = epoch, iter, None

    def after_batch(self, learn):
        if learn.training and (learn.epoch, learn.iter) == (self.epoch, self.iter):
            self.state = learn.state_dict()
            raise CancelFitException()


def test_state_dict_says_where_training_stands():
    stop = StopAt(1, 2)
    learn = tiny_learner([stop], n=24, bs=4)  # 6 batches an epoch
    learn.fit(3)
    assert (stop.state["epoch"], stop.state["iter"], stop.state["count"]) == (1, 3, 12)  # batches 0, 1, 2 done
    assert stop.state["sums"].shape == (1,) and stop.state["sums"].item() > 0
    after = learn.state_dict()  # the fit stopped there: the same position
    assert after.keys() == stop.state.keys() and torch.equal(after["sums"], stop.state["sums"])
    assert all(after[k] == stop.state[k] for k in ("epoch", "iter", "count", "epochs_before"))
    learn.fit(1)  # a whole epoch: training stands at the start of the next one
    assert {k: v for k, v in learn.state_dict().items() if k != "sums"} == {
        "epoch": 1, "iter": 0, "count": 0, "epochs_before": 2}  # the stopped fit had begun 2 epochs


def test_state_dict_round_trips_through_load_state_dict():
    stop = StopAt(0, 1)
    tiny_learner([stop], n=24, bs=4).fit(2)
    other = tiny_learner()
    other.load_state_dict(stop.state)
    again = other.state_dict()
    assert {k: v for k, v in again.items() if k != "sums"} == {k: v for k, v in stop.state.items() if k != "sums"}
    assert torch.equal(again["sums"], stop.state["sums"]) and again["sums"] is not stop.state["sums"]


def test_state_dict_while_validating_is_refused():
    class Ask(Callback):
        def after_batch(self, learn):
            if not learn.training:
                learn.state_dict()

    with pytest.raises(RuntimeError, match="while validating"):
        tiny_learner([Ask()]).fit(1)


def test_resume_through_state_dict_is_bit_identical_to_one_fit():
    """Stop mid-epoch, move weights, optimizer and position to a fresh Learner: its fit ends where one fit does,
    with the same logs (the resumed epoch's partial sums) and the one-cycle schedule continued mid-way."""
    def learner(cbs=()):
        torch.manual_seed(0)
        x = torch.randn(40, 3)
        y = (x[:, :1] > 0).float()
        dls = DataLoaders(DataLoader(x, y, 4, shuffle=True, seed=3), DataLoader(x, y, 8))
        return Learner(nn.Linear(3, 1), dls, mnist_loss, cbs=[Recorder(), *cbs],
                       opt_func=lambda ps, lr: SGD(ps, lr, mom=0.9), metrics=[batch_accuracy])

    whole = learner()
    whole.fit_one_cycle(3, 0.5)
    stop = StopAt(1, 4)
    first = learner([stop])
    first.fit_one_cycle(3, 0.5)
    second = learner()
    second.model.load_state_dict(first.model.state_dict())
    second.opt = second.opt_func(second.parameters(), second.lr)
    second.opt.load_state_dict(first.opt.state_dict())
    second.load_state_dict(stop.state)
    second.cbs[0].load_state_dict(first.cbs[0].state_dict())  # the Recorder's history
    second.fit_one_cycle(3, 0.5)
    assert second.step_offset == 1 * 10 + 5
    for a, b in zip(whole.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    untimed = lambda logs: [{k: v for k, v in log.items() if k != "time"} for log in logs]  # noqa: E731
    assert untimed(second.cbs[0].logs) == untimed(whole.cbs[0].logs)
    assert second.cbs[0].lrs == whole.cbs[0].lrs
