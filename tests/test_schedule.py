"""The one-cycle schedule against torch.optim.lr_scheduler.OneCycleLR, as a function and applied by a real fit."""

import pytest
import torch
from torch import nn

from digitlab.data import DataLoader, DataLoaders
from digitlab.train.callback import Callback
from digitlab.train.learner import Learner
from digitlab.train.losses import cross_entropy
from digitlab.train.optim import SGD, Adam
from digitlab.train.schedule import one_cycle


def torch_curve(total, lr_max, pct_start, div, div_final, opt="sgd"):
    """(lr, momentum) of every step from OneCycleLR on a torch optimizer."""
    p = nn.Parameter(torch.zeros(1))
    if opt == "sgd":
        o = torch.optim.SGD([p], lr=lr_max, momentum=0.9)
        mom = lambda: o.param_groups[0]["momentum"]  # noqa: E731
    else:
        o = torch.optim.Adam([p], lr=lr_max)
        mom = lambda: o.param_groups[0]["betas"][0]  # noqa: E731
    sched = torch.optim.lr_scheduler.OneCycleLR(o, lr_max, total_steps=total, pct_start=pct_start,
                                                div_factor=div, final_div_factor=div_final, base_momentum=0.85,
                                                max_momentum=0.95)
    out = []
    for _ in range(total):
        out.append((o.param_groups[0]["lr"], mom()))
        o.step()
        sched.step()
    return out


@pytest.mark.parametrize("total, lr_max, pct_start, div, div_final", [
    (100, 0.1, 0.25, 25.0, 1e4), (97, 3e-3, 0.3, 10.0, 100.0), (1000, 1.0, 0.5, 25.0, 1e4), (13, 0.5, 0.2, 5.0, 1e3)])
def test_one_cycle_equals_torch_one_cycle_lr(total, lr_max, pct_start, div, div_final):
    theirs = torch_curve(total, lr_max, pct_start, div, div_final)
    ours = [one_cycle(s, total, lr_max, pct_start, div, div_final) for s in range(total)]
    for (lr, mom), (tlr, tmom) in zip(ours, theirs):
        assert lr == pytest.approx(tlr, abs=1e-9, rel=0) and mom == pytest.approx(tmom, abs=1e-9, rel=0)
    assert 0.9 * lr_max < max(lr for lr, _ in ours) <= lr_max  # the peak may fall between two steps


class Hypers(Callback):
    """Records the optimizer's lr and momentum at every training step (after the schedule set them)."""
    order = 30

    def __init__(self):
        self.seen = []

    def after_predict(self, learn):
        if learn.training:
            g = learn.opt.param_groups[0]
            self.seen.append((g["lr"], g["mom"]))


@pytest.mark.parametrize("opt_func, opt", [(lambda ps, lr: SGD(ps, lr, mom=0.9), "sgd"), (Adam, "adam")])
def test_fit_one_cycle_applies_the_torch_curve(opt_func, opt):
    torch.manual_seed(0)
    x, y = torch.randn(200, 4), torch.randint(0, 3, (200,))
    dls = DataLoaders(DataLoader(x, y, 16, shuffle=True), DataLoader(x, y, 64))
    hyp = Hypers()
    learn = Learner(nn.Linear(4, 3), dls, cross_entropy, opt_func=opt_func, cbs=[hyp])
    learn.fit_one_cycle(3, 0.05, pct_start=0.3)
    total = 3 * len(dls.train)
    theirs = torch_curve(total, 0.05, 0.3, 25.0, 1e4, opt)
    assert len(hyp.seen) == total == 39
    for (lr, mom), (tlr, tmom) in zip(hyp.seen, theirs):
        assert lr == pytest.approx(tlr, abs=1e-9, rel=0) and mom == pytest.approx(tmom, abs=1e-9, rel=0)
    assert learn.cbs == [hyp]  # the schedule belonged to that fit only
