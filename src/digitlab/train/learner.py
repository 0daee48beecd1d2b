"""The Learner: one small training loop with named events that callbacks hook into (after fastai's miniai).

Events, in order: before_fit, [before_epoch, before_train, [before_batch, after_predict, after_loss,
after_backward, after_step, after_batch]*, after_pass, after_train, before_validate, [batch events]*,
after_pass, after_validate, after_epoch]*, after_fit. Raising CancelBatchException, CancelEpochException or
CancelFitException in a callback skips the rest of that level and its `after_` event; its `cleanup_` event always
runs (see callback.py).
"""

from __future__ import annotations

import time
from itertools import islice
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from ..hardware import FP32, Precision
from .callback import CANCEL, Callback
from .loss_scale import LossScaler
from .lr_find import LRFindResult, lr_find
from .optim import SGD, set_hyper
from .schedule import OneCycle


def metric_name(m: Callable) -> str:
    return getattr(m, "__name__", type(m).__name__)


class Learner:
    """Trains `model` on `dls` with `loss_func`, optimizer `opt_func(params, lr)` and callbacks `cbs`.

    Attributes callbacks may read and write: model, dls, loss_func, opt, lr, metrics, cbs, n_epochs, epoch,
    training, dl, iter (batch index), n_iter (batches this pass), xb, yb, preds, loss, sums and count (this pass's
    totals on the device: loss and metrics times batch size, and items), log (this epoch's results: epoch,
    train_loss, valid_loss, one entry per metric, time), pct_train (fraction of training done), step_offset
    (training steps done before this fit's first batch: nonzero when it continues a loaded state, so schedules
    continue mid-way), diverged (NanGuard: where the loss stopped being finite, else None) and interrupted
    (Checkpointer: the signal that stopped the fit, else None). Where training stands is state_dict().
    batch_losses and batch_lrs are None and empty here; an engine that runs a training pass without batch events
    (FastLearner) sets them to the pass's per-batch losses and learning rates before after_train.
    `precision` (digitlab.hardware) is the forward pass's arithmetic: fp32, or bf16/fp16 autocast with float32
    scores for the loss and metrics; fp16 adds a `scaler` (loss_scale.py) and skips steps whose gradients overflow.
    """

    def __init__(self, model: nn.Module | Callable, dls, loss_func: Callable, lr: float = 0.1,
                 cbs: Iterable[Callback] = (), opt_func: Callable = SGD, metrics: Sequence[Callable] = (),
                 params: Iterable[torch.Tensor] | None = None, precision: Precision = FP32):
        self.model, self.dls, self.loss_func, self.lr = model, dls, loss_func, lr
        self.precision, self.scaler = precision, LossScaler() if precision.loss_scaling else None
        self.opt_func, self.metrics, self.cbs = opt_func, list(metrics), list(cbs)
        self.params = list(params) if params is not None else None  # for plain functions such as the book's linear1
        self.opt, self.log, self.n_epochs, self.epoch, self.iter, self.n_iter = None, {}, 0, 0, 0, 0
        self.training, self.pct_train, self.step_offset, self.do_train, self.do_validate = False, 0.0, 0, True, True
        self.dl = self.xb = self.yb = self.preds = self.loss = None
        self.sums, self.count = torch.zeros(1), 0
        self.diverged: dict | None = None
        self.batch_losses: torch.Tensor | None = None
        self.batch_lrs: list[float] = []
        self.interrupted: str | None = None
        # the position (state_dict): training batches done in `epoch`, whether `epoch` has ended, a loaded position
        # the next fit continues from, and the epochs of earlier fits (each fit sees new data orders)
        self.iters_done, self.epoch_ended, self.resume_at = 0, False, None
        self.epochs_before, self.epochs_run = 0, 0
        self.index_callbacks()

    # the step, as small methods a subclass can override
    def predict(self) -> None:
        if self.precision.name == "fp32":
            self.preds = self.model(self.xb)
            return
        with self.precision.autocast(self.xb.device.type):
            self.preds = self.model(self.xb).float()

    def get_loss(self) -> None:
        self.loss = self.loss_func(self.preds, self.yb)

    def backward(self) -> None:
        (self.loss if self.scaler is None else self.scaler.scaled(self.loss)).backward()

    def step(self) -> None:
        if self.scaler is None or self.scaler.unscale(self.parameters()):
            self.opt.step()

    def zero_grad(self) -> None:
        self.opt.zero_grad()

    def parameters(self) -> list[torch.Tensor]:
        return self.params if self.params is not None else list(self.model.parameters())

    def callback(self, event: str) -> None:
        """Call every callback's method for `event`, lowest order first."""
        for method in self._handlers.get(event, ()):
            method(self)

    def index_callbacks(self) -> None:
        """Map each event to its handlers once per fit, so the per-batch dispatch is a dict lookup."""
        self._handlers = {}
        for cb in sorted(self.cbs, key=lambda c: c.order):
            for name in dir(cb):
                if name.startswith(("before_", "after_", "cleanup_")):
                    self._handlers.setdefault(name, []).append(getattr(cb, name))

    def with_events(self, level: str, body: Callable[[], None]) -> None:
        """Run before_<level>, body, after_<level>; a Cancel<level> skips the rest; cleanup_<level> always runs."""
        try:
            self.callback(f"before_{level}")
            body()
            self.callback(f"after_{level}")
        except CANCEL[level]:
            pass
        finally:
            self.callback(f"cleanup_{level}")

    def one_batch(self) -> None:
        self.predict()
        self.callback("after_predict")
        self.get_loss()
        self.callback("after_loss")
        if self.training:
            self.backward()
            self.callback("after_backward")
            self.step()
            self.callback("after_step")
            self.zero_grad()
        self.accumulate()

    def one_pass(self, training: bool) -> None:
        """One pass over the training or validation data, accumulating loss and metrics on the device."""
        self.training, self.dl = training, self.dls.train if training else self.dls.valid
        if hasattr(self.model, "train"):
            self.model.train(training)
        if training and hasattr(self.dl, "set_epoch"):
            self.dl.set_epoch(self.epochs_before + self.epoch)  # order = f(seed, epoch): resumable, same on every rank
        self.sums = torch.zeros(1 + (0 if training else len(self.metrics)), device=self.dls.valid.device)
        self.count, self.n_iter, start = 0, len(self.dl), 0
        if training and self.resume_at is not None:  # continue a loaded position, mid-epoch
            at, self.resume_at = self.resume_at, None
            self.iters_done = start = at["iter"]
            self.count, self.sums = at["count"], at["sums"].to(self.sums.device, copy=True)  # a copy: `at` stays whole
        self.pct_train = (self.epoch * self.n_iter + start) / (self.n_iter * self.n_epochs) if training else self.pct_train
        with torch.set_grad_enabled(training):
            for self.iter, (self.xb, self.yb) in enumerate(islice(self.dl, start, None), start):
                self.with_events("batch", self.one_batch)
                if training:
                    self.pct_train += 1 / (self.n_iter * self.n_epochs)
        self.callback("after_pass")  # the totals are complete here: a distributed run sums them across processes
        results = (self.sums / max(self.count, 1)).tolist()
        if training:
            self.log["train_loss"] = results[0]
        else:
            self.log["valid_loss"] = results[0]
            self.log.update({metric_name(m): v for m, v in zip(self.metrics, results[1:])})

    def accumulate(self) -> None:
        """Add this batch's loss (and, when validating, metrics) times its size to the pass's sums, on the device."""
        bs = len(self.yb)
        if self.training:  # a detached loss: nothing here is recorded by autograd, so no no_grad context (~2 us)
            self.sums[:1].add_(self.loss.detach() * bs)  # in place: `sums[0] +=` also writes the element back
            self.iters_done = self.iter + 1  # this batch is in the sums: a resume from here on skips it
        else:
            with torch.no_grad():
                values = [self.loss.detach()] + [m(self.preds, self.yb) for m in self.metrics]
                self.sums += torch.stack([v.float().reshape(()) for v in values]) * bs
        self.count += bs

    def one_epoch(self) -> None:
        start = time.perf_counter()
        self.log = {"epoch": self.epoch}
        if self.do_train:
            self.with_events("train", lambda: self.one_pass(True))
        if self.do_validate:
            self.with_events("validate", lambda: self.one_pass(False))
        self.log["time"] = time.perf_counter() - start
        self.epoch_ended = True  # from after_epoch on, training stands at the start of the next epoch

    def fit(self, n_epochs: int = 1, lr: float | None = None, cbs: Iterable[Callback] = (), train: bool = True,
            validate: bool = True, reset_opt: bool = False) -> "Learner":
        """Train for `n_epochs`, validating after each (fastai's `fit`); after load_state_dict, continue from there."""
        cbs = list(cbs)
        self.cbs += cbs
        if lr is not None:
            self.lr = lr
        if self.opt is None or reset_opt:
            self.opt = self.opt_func(self.parameters(), self.lr)
        elif lr is not None:
            set_hyper(self.opt, "lr", lr)
        start = self.resume_at or {"epoch": 0, "iter": 0}
        self.epochs_before, self.epochs_run = self.epochs_before + self.epochs_run, 0  # the previous fit's epochs
        self.n_epochs, self.do_train, self.do_validate, self.pct_train = n_epochs, train, validate, 0.0
        self.epoch, self.iters_done, self.epoch_ended = start["epoch"], 0, False
        self.step_offset = start["epoch"] * len(self.dls.train) + start["iter"]
        self.index_callbacks()
        try:
            self.with_events("fit", self.all_epochs)
        finally:
            for cb in cbs:
                self.cbs.remove(cb)
        return self

    def all_epochs(self) -> None:
        for self.epoch in range(self.epoch, self.n_epochs):  # from 0, or from the epoch of a loaded position
            self.epochs_run += 1
            self.iters_done, self.epoch_ended = 0, False
            self.with_events("epoch", self.one_epoch)

    def state_dict(self) -> dict:
        """Where training stands, for checkpoints: `epoch`, the training batches done in it (`iter`) with their
        partial `sums` and `count`, and `epochs_before`; once an epoch has ended, the start of the next one.
        Defined between training batches and between epochs (where Checkpointer saves), not while validating."""
        if self.resume_at is not None:  # loaded, not yet continued
            return {**self.resume_at, "sums": self.resume_at["sums"].clone(), "epochs_before": self.epochs_before}
        if not (self.training or self.epoch_ended) and self.iters_done:
            raise RuntimeError("Learner.state_dict() while validating: this epoch's training totals are gone. "
                               "Take it between training batches or after an epoch, as Checkpointer does.")
        epoch, done = (self.epoch + 1, 0) if self.epoch_ended else (self.epoch, self.iters_done)
        return {"epoch": epoch, "iter": done, "count": self.count if done else 0,
                "sums": self.sums.detach().clone() if done else torch.zeros(1), "epochs_before": self.epochs_before}

    def load_state_dict(self, state: dict) -> None:
        """Make the next fit continue from `state` (a state_dict); the model and optimizer are restored apart."""
        self.resume_at = {k: state[k] for k in ("epoch", "iter", "count", "sums")}
        self.epochs_before, self.epochs_run = state.get("epochs_before", 0), 0

    def fit_one_cycle(self, n_epochs: int, lr_max: float | None = None, pct_start: float = 0.25, div: float = 25.0,
                      div_final: float = 1e4, moms: tuple[float, float, float] | None = (0.95, 0.85, 0.95),
                      cbs: Iterable[Callback] = (), **kwargs) -> "Learner":
        """fit with the one-cycle schedule (cosine lr up then down, momentum the other way; see schedule.py)."""
        lr_max = self.lr if lr_max is None else lr_max
        return self.fit(n_epochs, lr_max, cbs=[OneCycle(lr_max, pct_start, div, div_final, moms), *cbs], **kwargs)

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100,
                stop_div: bool = True) -> LRFindResult:
        """Sweep the rate exponentially, stop on divergence, restore model and optimizer exactly; see lr_find.py."""
        return lr_find(self, start_lr, end_lr, num_it, stop_div)

    def validate(self) -> dict:
        """Run one validation pass now; return its log (valid_loss and metrics)."""
        self.n_epochs, self.log = max(self.n_epochs, 1), {"epoch": self.epoch}
        self.index_callbacks()
        self.with_events("validate", lambda: self.one_pass(False))
        return dict(self.log)
