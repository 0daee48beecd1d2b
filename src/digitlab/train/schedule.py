"""Schedules as pure functions of training progress, and the callback that applies them to an optimizer."""

from __future__ import annotations

import math

from .callback import Callback
from .optim import set_hyper


def cos_anneal(start: float, end: float, pct: float) -> float:
    """Cosine from `start` (pct=0) to `end` (pct=1)."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def one_cycle(step: int, total: int, lr_max: float, pct_start: float = 0.25, div: float = 25.0,
              div_final: float = 1e4, moms: tuple[float, float, float] = (0.95, 0.85, 0.95)) -> tuple[float, float]:
    """(lr, momentum) at `step` of `total` in a one-cycle schedule, as torch's OneCycleLR (cosine, two phases):
    lr rises from lr_max/div to lr_max over the first pct_start of training, then falls to lr_max/div/div_final;
    momentum moves the opposite way."""
    warm_end = pct_start * total - 1
    if step <= warm_end:
        pct = step / warm_end if warm_end > 0 else 1.0
        return cos_anneal(lr_max / div, lr_max, pct), cos_anneal(moms[0], moms[1], pct)
    pct = (step - warm_end) / max(total - 1 - warm_end, 1e-12)
    return cos_anneal(lr_max, lr_max / div / div_final, pct), cos_anneal(moms[1], moms[2], pct)


class OneCycle(Callback):
    """Sets lr and momentum before every training batch from `one_cycle` over the whole fit."""
    order = 10

    def __init__(self, lr_max: float, pct_start: float = 0.25, div: float = 25.0, div_final: float = 1e4,
                 moms: tuple[float, float, float] | None = (0.95, 0.85, 0.95)):
        self.lr_max, self.pct_start, self.div, self.div_final, self.moms = lr_max, pct_start, div, div_final, moms

    def before_fit(self, learn):
        self.total = learn.n_epochs * len(learn.dls.train)
        self.step = learn.step_offset  # a fit that continues a loaded position continues mid-schedule

    def before_batch(self, learn):
        if not learn.training:
            return
        lr, mom = one_cycle(min(self.step, self.total - 1), self.total, self.lr_max, self.pct_start, self.div,
                            self.div_final, self.moms or (0, 0, 0))
        set_hyper(learn.opt, "lr", lr)
        if self.moms and "mom" in learn.opt.param_groups[0]:
            set_hyper(learn.opt, "mom", mom)
        self.step += 1
