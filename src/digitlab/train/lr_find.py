"""The learning-rate finder (Smith 2015, as fastai's lr_find): train briefly while the rate grows exponentially,
stop when the loss diverges, put the model and optimizer back exactly as they were, and suggest a rate."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from ..viz.figures import new_figure
from .callback import Callback, CancelFitException, CancelValidateException
from .optim import set_hyper


@dataclass
class LRFindResult:
    lrs: list[float]          # the rate of each batch tried
    losses: list[float]       # the smoothed training loss after each of those batches
    suggestion: float         # the middle of the longest steady descent ("valley")
    lr_min: float             # a tenth of the rate at the lowest loss (fastai's "minimum")
    lr_steep: float           # the rate where the loss falls fastest

    def to_dict(self) -> dict:
        return {"suggestion": self.suggestion, "lr_min": self.lr_min, "lr_steep": self.lr_steep,
                "lrs": self.lrs, "losses": self.losses}


class LRFinder(Callback):
    """Sets lr = start_lr * (end_lr / start_lr) ** (i / (num_it - 1)) before training batch i; records the
    smoothed loss; cancels the fit after num_it batches or when the loss passes `div` times its minimum.
    Order 20: after a schedule callback (order 10), so the finder's rate is the one used."""
    order = 20

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, stop_div: bool = True,
                 div: float = 4.0, beta: float = 0.98):
        self.start_lr, self.end_lr, self.num_it, self.stop_div = start_lr, end_lr, num_it, stop_div
        self.div, self.beta = div, beta

    def before_fit(self, learn):
        self.lrs, self.losses, self.i, self.avg, self.best = [], [], 0, 0.0, math.inf

    def before_batch(self, learn):
        if learn.training:
            lr = self.start_lr * (self.end_lr / self.start_lr) ** (self.i / max(self.num_it - 1, 1))
            set_hyper(learn.opt, "lr", lr)
            self.lrs.append(lr)

    def after_batch(self, learn):
        if not learn.training:
            return
        self.i += 1
        loss = learn.loss.item()
        self.avg = self.beta * self.avg + (1 - self.beta) * loss  # exponential average, debiased below
        smooth = self.avg / (1 - self.beta ** self.i)
        self.losses.append(smooth)
        self.best = min(self.best, smooth)
        diverged = not math.isfinite(smooth) or (self.stop_div and smooth > self.div * self.best)
        if diverged or self.i >= self.num_it:
            raise CancelFitException()

    def before_validate(self, learn):
        raise CancelValidateException()


def valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's 'valley': the longest decreasing subsequence of the losses, and the rate half-way into it
    (1/3 + 1/6 of its length from its start, as fastai 2.4+)."""
    n = len(losses)
    lds, max_start, max_end = [1] * n, 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[max_end] < lds[i]:
            max_end, max_start = i, i - lds[i]
    section = (max_end - max_start) / 3
    return float(lrs[max_start + int(section) + int(section / 2)])


def steepest(lrs: list[float], losses: list[float]) -> float:
    """The rate where the loss falls fastest against log(lr)."""
    if len(losses) < 3:
        return float(lrs[0])
    slopes = [(losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(len(lrs) - 1)]
    return float(lrs[min(range(len(slopes)), key=slopes.__getitem__)])


# the Learner's position (see Learner.state_dict) and the epoch counts that give the next fit its data order
POSITION = ("epoch", "training", "iters_done", "epoch_ended", "resume_at", "sums", "count", "epochs_before",
            "epochs_run")


def snapshot(learn) -> dict:
    """Everything a short fit changes that lr_find must put back: weights and buffers, optimizer state and
    hyper-parameters, the learner's rate, log and position, the loaders' epoch counters and the random number
    generators."""
    return {"model": copy.deepcopy(learn.model.state_dict()),
            "opt": None if learn.opt is None else copy.deepcopy(learn.opt.state_dict()),
            "had_opt": learn.opt is not None, "lr": learn.lr, "log": dict(learn.log),
            "position": {name: getattr(learn, name) for name in POSITION},  # a fit replaces these, never edits them
            "dl_epochs": (learn.dls.train.epoch, learn.dls.valid.epoch), "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore(learn, snap: dict) -> None:
    learn.model.load_state_dict(snap["model"])  # copies into the same tensors: the optimizer still holds them
    if snap["had_opt"]:
        learn.opt.load_state_dict(snap["opt"])
    else:
        learn.opt = None  # the next fit makes a fresh optimizer, as it would have
    learn.lr, learn.log = snap["lr"], snap["log"]
    for name, value in snap["position"].items():
        setattr(learn, name, value)
    learn.dls.train.epoch, learn.dls.valid.epoch = snap["dl_epochs"]
    torch.set_rng_state(snap["rng"])
    if snap["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all(snap["cuda_rng"])


def lr_find(learn, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100,
            stop_div: bool = True) -> LRFindResult:
    """Sweep the rate over up to num_it training batches, then restore `learn` exactly; see LRFindResult."""
    snap = snapshot(learn)
    learn.resume_at = None  # the sweep starts afresh; a loaded position is put back for the next fit
    finder = LRFinder(start_lr, end_lr, num_it, stop_div)
    n_epochs = math.ceil(num_it / len(learn.dls.train))
    try:
        learn.fit(n_epochs, start_lr, cbs=[finder])
    finally:
        restore(learn, snap)
    lrs, losses = finder.lrs[:len(finder.losses)], finder.losses
    if not losses:
        raise ValueError("lr_find ran no training batch: is the training set empty?")
    finite = [i for i, v in enumerate(losses) if math.isfinite(v)]
    lrs_f, losses_f = [lrs[i] for i in finite], [losses[i] for i in finite]
    best = min(range(len(losses_f)), key=losses_f.__getitem__)
    return LRFindResult(lrs, losses, valley(lrs_f, losses_f), lrs_f[best] / 10, steepest(lrs_f, losses_f))


def lr_find_figure(res: LRFindResult):
    """Loss against rate (log scale), with the suggestions marked."""
    fig, ax = new_figure(6, 4)
    ax.plot(res.lrs, res.losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    for lr, name, colour in ((res.suggestion, "valley", "red"), (res.lr_min, "min/10", "green"),
                             (res.lr_steep, "steepest", "orange")):
        ax.axvline(lr, color=colour, linestyle="--", alpha=0.7, label=f"{name} {lr:.2e}")
    ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(f"lr_find: suggested {res.suggestion:.2e}")
    return fig
