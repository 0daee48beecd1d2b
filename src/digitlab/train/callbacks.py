"""Callbacks that ship with the Learner: recording, printing, the divergence guard, batch augmentation."""

from __future__ import annotations

import math

import torch

from ..data.augment import augment_batch
from .callback import Callback, CancelFitException


class Recorder(Callback):
    """Keeps every epoch's log (`logs`), and the loss and learning rate of every training batch.

    `values` is fastai's view: one row per epoch of [train_loss, valid_loss, *metrics].
    """
    order = 50
    batch_events_optional = True  # the fast engine hands over a pass's losses and rates at once (after_train)
    restored = False  # set by load_state_dict: the next fit keeps the history loaded from a checkpoint

    def before_fit(self, learn):
        if not self.restored:
            self.logs, self._losses, self.lrs = [], [], []
        self.restored = False

    def after_batch(self, learn):
        if learn.training:
            self._losses.append(learn.loss.detach())  # stays on the device: no sync per batch
            self.lrs.append(current_lr(learn.opt))

    def after_train(self, learn):
        if learn.batch_losses is not None:  # a pass without batch events (the fast engine)
            self._losses.extend(learn.batch_losses.unbind())
            self.lrs.extend(learn.batch_lrs)

    def after_epoch(self, learn):
        self.logs.append(dict(learn.log))

    def state_dict(self) -> dict:
        """History so far, for checkpoints (curves stay whole across a resume)."""
        return {"logs": self.logs, "losses": torch.tensor(self.losses), "lrs": torch.tensor(self.lrs, dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        self.logs = list(state.get("logs", []))
        self._losses = [torch.tensor(v) for v in state["losses"].tolist()] if "losses" in state else []
        self.lrs = state["lrs"].tolist() if "lrs" in state else []
        self.restored = True

    @property
    def losses(self) -> list[float]:
        return torch.stack(self._losses).float().cpu().tolist() if self._losses else []

    @property
    def metric_names(self) -> list[str]:
        return [k for k in (self.logs[0] if self.logs else {}) if k not in ("epoch", "time")]

    @property
    def values(self) -> list[list[float]]:
        return [[log[k] for k in self.metric_names] for log in self.logs]


class PrintEpochs(Callback):
    """Print one line per epoch with the results, or with `only` the named entries (the book's style)."""
    order = 60

    def __init__(self, only: str | None = None, printer=print):
        self.only, self.printer = only, printer

    def after_epoch(self, learn):
        if self.only:
            self.printer(f"{learn.log[self.only]:.4f}", end=" ")
        else:
            self.printer("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in learn.log.items()))

    def after_fit(self, learn):
        if self.only:
            self.printer()


class NanGuard(Callback):
    """Stop training when the loss becomes NaN or infinite, recording where in `learn.diverged`: at that batch,
    or (an engine without batch events) at the end of the training pass, at its first non-finite step."""
    order = 5
    batch_events_optional = True

    def before_fit(self, learn):
        learn.diverged = None

    def after_loss(self, learn):
        if learn.training and not math.isfinite(learn.loss.item()):
            learn.diverged = {"epoch": learn.epoch, "step": learn.iter, "loss": learn.loss.item()}
            raise CancelFitException()

    def after_train(self, learn):
        if learn.batch_losses is None:
            return
        bad = (~torch.isfinite(learn.batch_losses)).nonzero()
        if len(bad):
            step = int(bad[0])
            learn.diverged = {"epoch": learn.epoch, "step": step, "loss": learn.batch_losses[step].item()}
            raise CancelFitException()


class BatchAugment(Callback):
    """Replace each training batch `learn.xb` with an augmented copy (data/augment.py); validation batches are left
    alone. The generator is seeded at the start of each fit, so the same seed gives the same augmented batches."""
    order = 1  # before the model sees the batch, after nothing else

    def __init__(self, seed: int = 0, shift: float = 2.0, degrees: float = 10.0, scale: float = 0.1,
                 flip: bool = False):
        self.seed, self.shift, self.degrees, self.scale, self.flip = seed, shift, degrees, scale, flip
        self.g, self.restored = torch.Generator().manual_seed(seed), False

    def before_fit(self, learn):
        if not self.restored:  # a resumed fit continues the restored generator
            self.g = torch.Generator().manual_seed(self.seed)
        self.restored = False

    def state_dict(self) -> dict:
        """The generator's state, so a resumed run draws the same augmentations (see train/checkpoint.py)."""
        return {"generator": self.g.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.g.set_state(state["generator"])
        self.restored = True

    def before_batch(self, learn):
        if learn.training:
            learn.xb = augment_batch(learn.xb, self.g, self.shift, self.degrees, self.scale, self.flip)


def current_lr(opt) -> float:
    if opt is None:
        return float("nan")
    return opt.param_groups[0]["lr"] if hasattr(opt, "param_groups") else opt.lr
