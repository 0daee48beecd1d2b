"""lr_find: the exponential sweep, stopping on divergence, the suggestion, and restoring everything exactly."""

import math

import pytest
import torch

from digitlab.data import DataLoader, DataLoaders
from digitlab.data.tasks import to_input
from digitlab.models import build_model
from digitlab.train.learner import Learner
from digitlab.train.losses import cross_entropy
from digitlab.train.lr_find import lr_find_figure, valley
from digitlab.train.optim import SGD, Adam


def learner(mnist, opt_func, n=2048, bs=128):
    torch.manual_seed(0)
    tr, va = mnist["train"], mnist["valid"]
    dls = DataLoaders(DataLoader(tr.images[:n], tr.labels[:n], bs, shuffle=True, seed=1, tfm=to_input),
                      DataLoader(va.images[:512], va.labels[:512], 512, tfm=to_input))
    return Learner(build_model("fastcnn", 10), dls, cross_entropy, opt_func=opt_func)


def state(learn):
    model = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt = {i: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
           for i, s in learn.opt.state_dict()["state"].items()}
    return model, opt, [dict((k, v) for k, v in g.items()) for g in learn.opt.state_dict()["groups"]]


def assert_same(a, b):
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
@pytest.mark.parametrize("opt_func", [lambda ps, lr: SGD(ps, lr, mom=0.9, wd=1e-4), Adam])
def test_lr_find_restores_model_and_optimizer_bit_exactly(mnist, opt_func):
    learn = learner(mnist, opt_func)
    learn.fit(1, 0.01)  # momentum buffers / Adam moments and BN running stats now hold real values
    model, opt, groups = state(learn)
    res = learn.lr_find(num_it=30)
    model2, opt2, groups2 = state(learn)
    assert_same(model, model2)
    assert opt.keys() == opt2.keys() and len(opt) > 0
    for i in opt:
        for k, v in opt[i].items():
            assert torch.equal(v, opt2[i][k]) if torch.is_tensor(v) else v == opt2[i][k]
    assert groups == groups2 and learn.lr == 0.01
    assert len(res.lrs) == len(res.losses) and len(res.losses) <= 30


@pytest.mark.slow
def test_training_after_lr_find_is_the_training_without_it(mnist):
    """Weights, optimizer, data order and random state all come back: the next fit cannot tell."""
    opt = lambda ps, lr: SGD(ps, lr, mom=0.9)  # noqa: E731
    a, b = learner(mnist, opt, n=1024), learner(mnist, opt, n=1024)
    a.lr_find(num_it=20)  # before any fit: no optimizer yet, and none after
    assert a.opt is None
    a.fit(1, 0.05)
    b.fit(1, 0.05)
    a.lr_find(num_it=20)
    a.fit(1, 0.05)
    b.fit(1, 0.05)
    assert_same(a.model.state_dict(), b.model.state_dict())


@pytest.mark.slow
def test_sweep_is_exponential_stops_on_divergence_and_suggests_a_sane_rate(mnist, tmp_path):
    learn = learner(mnist, lambda ps, lr: SGD(ps, lr, mom=0.9), n=60000 // 4)
    res = learn.lr_find(start_lr=1e-5, end_lr=1e3, num_it=100)
    ratios = [b / a for a, b in zip(res.lrs, res.lrs[1:])]
    assert all(r == pytest.approx(1e8 ** (1 / 99), rel=1e-9) for r in ratios)
    assert res.lrs[0] == pytest.approx(1e-5)
    assert len(res.losses) < 100  # a rate of 1000 with momentum diverges long before the end
    assert res.losses[-1] > 4 * min(res.losses) or not math.isfinite(res.losses[-1])
    assert 1e-3 < res.suggestion < 3.0 and 1e-3 < res.lr_min < 3.0
    assert res.losses[0] > min(res.losses)
    path = tmp_path / "lr_find.png"
    lr_find_figure(res).savefig(path)
    assert path.stat().st_size > 10_000


def test_valley_picks_the_middle_of_the_longest_descent():
    lrs = [10 ** (i / 10 - 5) for i in range(40)]
    losses = [2.0] * 10 + [2.0 - 0.1 * i for i in range(20)] + [0.1 + i for i in range(10)]
    # longest decreasing run: indices 10..29, start counted one before (fastai): 9 + int(20/3) + int(20/6)
    assert valley(lrs, losses) == lrs[9 + 6 + 3]


def test_lr_find_keeps_the_learners_position():
    """A position loaded to continue from (a resumed run) is still where the next fit starts after lr_find."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    dls = DataLoaders(DataLoader(x, y, 8, shuffle=True), DataLoader(x, y, 32))
    learn = Learner(torch.nn.Linear(4, 3), dls, cross_entropy)
    state = {"epoch": 1, "iter": 3, "count": 24, "sums": torch.tensor([20.0]), "epochs_before": 2}
    learn.load_state_dict(state)
    learn.lr_find(num_it=5)
    after = learn.state_dict()
    assert {k: v for k, v in after.items() if k != "sums"} == {k: v for k, v in state.items() if k != "sums"}
    assert torch.equal(after["sums"], state["sums"])
    learn.fit(2)
    assert learn.step_offset == 8 + 3
