"""Our optimizers against torch.optim, step by step on the same model and data."""

import copy

import pytest
import torch
from torch import nn

from digitlab.train.optim import SGD, Adam, AdamW, BasicOptim


def run_steps(model, opt, steps=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 5, generator=g), torch.randn(16, 2, generator=g)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    return [p.detach().clone() for p in model.parameters()]


def pair():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    return model, copy.deepcopy(model)


@pytest.mark.parametrize("ours, theirs", [
    (dict(lr=0.1), dict(lr=0.1)),
    (dict(lr=0.05, mom=0.9), dict(lr=0.05, momentum=0.9)),
    (dict(lr=0.05, mom=0.9, nesterov=True), dict(lr=0.05, momentum=0.9, nesterov=True)),
    (dict(lr=0.05, mom=0.9, wd=1e-2), dict(lr=0.05, momentum=0.9, weight_decay=1e-2)),
])
def test_sgd_matches_torch(ours, theirs):
    a, b = pair()
    for pa, pb in zip(run_steps(a, SGD(a.parameters(), **ours)), run_steps(b, torch.optim.SGD(b.parameters(), **theirs))):
        assert torch.allclose(pa, pb, atol=1e-6)


@pytest.mark.parametrize("ours, theirs_cls, theirs", [
    (lambda p: Adam(p, 1e-2), torch.optim.Adam, dict(lr=1e-2)),
    (lambda p: Adam(p, 1e-2, wd=1e-2, decouple_wd=False), torch.optim.Adam, dict(lr=1e-2, weight_decay=1e-2)),
    (lambda p: AdamW(p, 1e-2, wd=0.1), torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    (lambda p: Adam(p, 3e-3, mom=0.8, sqr_mom=0.99, eps=1e-6), torch.optim.Adam, dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6)),
])
def test_adam_matches_torch(ours, theirs_cls, theirs):
    a, b = pair()
    for pa, pb in zip(run_steps(a, ours(a.parameters())), run_steps(b, theirs_cls(b.parameters(), **theirs))):
        assert torch.allclose(pa, pb, atol=1e-6)


@pytest.mark.parametrize("decouple_wd", [True, False])
def test_fused_adam_step_is_the_per_parameter_algorithm(decouple_wd):
    """The fused kernel path against `update`, over groups with and without weight decay, a schedule moving lr and
    momentum each step, and a parameter whose gradient is missing on some steps (so it has its own step count)."""
    a, b = pair()

    def groups(model):
        params = list(model.parameters())
        return [{"params": [p for p in params if p.ndim > 1]},
                {"params": [p for p in params if p.ndim <= 1], "wd": 0.0}]

    fused = Adam(groups(a), 1e-2, wd=0.05, decouple_wd=decouple_wd, mom=0.95, sqr_mom=0.99, eps=1e-5)
    plain = Adam(groups(b), 1e-2, wd=0.05, decouple_wd=decouple_wd, mom=0.95, sqr_mom=0.99, eps=1e-5, fused=False)
    assert fused.fused and not plain.fused
    g = torch.Generator().manual_seed(0)
    for i in range(10):
        x, y = torch.randn(16, 5, generator=g), torch.randn(16, 2, generator=g)
        for model, opt in ((a, fused), (b, plain)):
            for group in opt.param_groups:  # a one-cycle-like schedule
                group["lr"], group["mom"] = 1e-2 * (1 + i) / 10, 0.95 - 0.01 * i
            ((model(x) - y) ** 2).mean().backward()
            if i % 3 == 0:
                model[2].bias.grad = None  # skipped on these steps
            opt.step()
            opt.zero_grad()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6, rtol=1e-5)
    assert fused.state[a[2].bias]["step"] == plain.state[b[2].bias]["step"] == 6


@pytest.mark.parametrize("grad_layout", [torch.channels_last, torch.contiguous_format])
def test_fused_adam_on_channels_last_weights(grad_layout):
    """Channels-last weights go to the kernel as (N, H, W, C) views; a gradient of another layout must not be
    paired element by element with them (8x3x3x3: the wrong view would have the same shape)."""
    torch.manual_seed(0)
    w = torch.randn(8, 3, 3, 3).to(memory_format=torch.channels_last)
    fused_w, plain_w = w.clone().requires_grad_(), w.clone().requires_grad_()
    assert fused_w.is_contiguous(memory_format=torch.channels_last) and not fused_w.is_contiguous()
    fused, plain = AdamW([fused_w], 1e-2, wd=0.1), AdamW([plain_w], 1e-2, wd=0.1, fused=False)
    for step in range(5):
        g = torch.randn(8, 3, 3, 3).contiguous(memory_format=grad_layout)
        for p, opt in ((fused_w, fused), (plain_w, plain)):
            p.grad = g.clone(memory_format=torch.preserve_format)
            opt.step()
    assert torch.allclose(fused_w, plain_w, atol=1e-6)
    assert fused_w.is_contiguous(memory_format=torch.channels_last)  # updated in place, layout kept


def test_fused_adam_state_dict_round_trip_continues_identically():
    a, b = pair()
    opt_a = AdamW(a.parameters(), 1e-2, wd=0.1)
    run_steps(a, opt_a, 3)
    b.load_state_dict(a.state_dict())
    opt_b = AdamW(b.parameters(), 1e-2, wd=0.1)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    for pa, pb in zip(run_steps(a, opt_a, 3, seed=5), run_steps(b, opt_b, 3, seed=5)):
        assert torch.equal(pa, pb)


def test_basic_optim_is_plain_sgd():
    a, b = pair()
    for pa, pb in zip(run_steps(a, BasicOptim(a.parameters(), 0.1)), run_steps(b, SGD(b.parameters(), 0.1))):
        assert torch.allclose(pa, pb, atol=1e-7)  # p - g*lr and the fused p.add_(g, alpha=-lr) round differently


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1), "lr must be"), (dict(lr=0.1, mom=1.5), "mom must be"), (dict(lr=float("nan")), "lr must be"),
])
def test_bad_hyper_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SGD(nn.Linear(2, 1).parameters(), **kwargs)


def test_state_dict_round_trip_continues_identically():
    a, b = pair()
    opt_a = SGD(a.parameters(), 0.05, mom=0.9)
    run_steps(a, opt_a, 3)
    b.load_state_dict(a.state_dict())
    opt_b = SGD(b.parameters(), 0.05, mom=0.9)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    for pa, pb in zip(run_steps(a, opt_a, 3, seed=5), run_steps(b, opt_b, 3, seed=5)):
        assert torch.equal(pa, pb)
