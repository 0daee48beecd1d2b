"""The chapter's stages 2 to 5 as functions that each train from scratch and return a StageResult.

Every stage uses the same 3-vs-7 tensors and the same seed; each line of code mirrors a step of the book. The
last stage, resnet18, is in resnet_stage.py; reproduce.py holds the table of stages by name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..data.loader import DataLoader, DataLoaders
from ..data.mnist import Split, as_xy, mnist_sample
from ..models.linear import Linear1, linear_model
from ..models.mlp import SimpleNetByHand, simple_net
from ..train.callbacks import Recorder
from ..train.learner import Learner
from ..train.losses import mnist_loss
from ..train.metrics import batch_accuracy
from ..train.optim import SGD, BasicOptim
from .by_hand import calc_grad, train_epoch, validate_epoch
from .pixel_similarity import pixel_similarity

BS = 256  # the book's batch size
VALID_BS = 4096  # validation needs no gradient memory: one batch instead of eight saves per-batch overhead


@dataclass
class ChapterData:
    """The book's MNIST_SAMPLE as tensors: x (N, 784) in [0, 1], y (N, 1) with 1 for a 3 and 0 for a 7."""
    train: Split
    valid: Split
    train_x: torch.Tensor
    train_y: torch.Tensor
    valid_x: torch.Tensor
    valid_y: torch.Tensor

    @classmethod
    def load(cls, root=None) -> "ChapterData":
        sample = mnist_sample(root)
        return cls(sample["train"], sample["valid"], *as_xy(sample["train"], 3), *as_xy(sample["valid"], 3))

    def dls(self, seed: int, bs: int = BS) -> DataLoaders:
        """A shuffled training loader (new order each epoch) and an ordered validation loader."""
        return DataLoaders(DataLoader(self.train_x, self.train_y, bs, shuffle=True, seed=seed),
                           DataLoader(self.valid_x, self.valid_y, VALID_BS))


@dataclass
class StageResult:
    """One stage's final accuracy against the book's, with its history and what it trained."""
    stage: str
    accuracy: float
    book: float
    epochs: int | None
    seconds: float
    history: list[float] = field(default_factory=list)  # accuracy after each epoch
    extras: dict = field(default_factory=dict)  # e.g. the mean images, the trained model, the recorder


def timed(fn: Callable) -> Callable:
    """Wrap a stage so its result carries the wall time it took."""
    def run(*args, **kwargs) -> StageResult:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        result.seconds = time.perf_counter() - start
        return result
    run.__name__, run.__doc__ = fn.__name__, fn.__doc__
    return run


@timed
def stage_pixel_similarity(data: ChapterData, seed: int = 42) -> StageResult:
    """Mean 3 vs mean 7, by L1 distance (the book's figure) and RMSE."""
    res = pixel_similarity(data.train, data.valid)
    return StageResult("pixel similarity (L1)", res["l1"]["accuracy"], 0.9511, None, 0.0, extras=res)


@timed
def stage_linear_by_hand(data: ChapterData, seed: int = 42, epochs: int = 20, lr: float = 1.0) -> StageResult:
    """init_params, linear1, mnist_loss, calc_grad, train_epoch with p.data -= p.grad * lr."""
    torch.manual_seed(seed)
    dls = data.dls(seed)
    model = Linear1()
    params = model.parameters()
    history = []
    for _ in range(epochs):
        train_epoch(model, lr, params, dls.train)
        history.append(validate_epoch(model, dls.valid))
    return StageResult("linear by hand", history[-1], 0.9696, epochs, 0.0, history, {"model": model})


def train_model(model, opt, dls: DataLoaders, epochs: int) -> list[float]:
    """The book's train_model: train_epoch with an optimizer object, validate_epoch after each."""
    history = []
    for _ in range(epochs):
        for xb, yb in dls.train:
            calc_grad(xb, yb, model)
            opt.step()
            opt.zero_grad()
        history.append(validate_epoch(model, dls.valid))
    return history


@timed
def stage_linear_basic_optim(data: ChapterData, seed: int = 42, epochs: int = 20, lr: float = 1.0) -> StageResult:
    """nn.Linear(28*28, 1) with the book's BasicOptim."""
    torch.manual_seed(seed)
    model = linear_model()
    history = train_model(model, BasicOptim(model.parameters(), lr), data.dls(seed), epochs)
    return StageResult("linear, BasicOptim", history[-1], 0.9785, epochs, 0.0, history, {"model": model})


@timed
def stage_linear_sgd(data: ChapterData, seed: int = 42, epochs: int = 20, lr: float = 1.0) -> StageResult:
    """nn.Linear(28*28, 1) with our SGD (by default the same update as BasicOptim)."""
    torch.manual_seed(seed)
    model = linear_model()
    history = train_model(model, SGD(model.parameters(), lr), data.dls(seed), epochs)
    return StageResult("linear, SGD", history[-1], 0.9785, epochs, 0.0, history, {"model": model})


def fit_learner(name: str, book: float, model, data: ChapterData, seed: int, epochs: int, lr: float) -> StageResult:
    """Learner(dls, model, opt_func=SGD, loss_func=mnist_loss, metrics=batch_accuracy).fit(epochs, lr)."""
    rec = Recorder()
    learn = Learner(model, data.dls(seed), mnist_loss, opt_func=SGD, metrics=[batch_accuracy], cbs=[rec])
    learn.fit(epochs, lr)
    history = [round(log["batch_accuracy"], 4) for log in rec.logs]
    return StageResult(name, history[-1], book, epochs, 0.0, history, {"model": model, "recorder": rec})


@timed
def stage_linear_learner(data: ChapterData, seed: int = 42, epochs: int = 10, lr: float = 1.0) -> StageResult:
    """DataLoaders + Learner.fit(10, lr=1.) on nn.Linear."""
    torch.manual_seed(seed)
    return fit_learner("linear, Learner.fit", 0.9676, linear_model(), data, seed, epochs, lr)


@timed
def stage_simple_net(data: ChapterData, seed: int = 42, epochs: int = 40, lr: float = 0.1) -> StageResult:
    """simple_net (784-30-1, ReLU) as nn.Sequential, Learner.fit(40, 0.1)."""
    torch.manual_seed(seed)
    return fit_learner("simple net, Learner.fit", 0.9828, simple_net(), data, seed, epochs, lr)


@timed
def stage_simple_net_by_hand(data: ChapterData, seed: int = 42, epochs: int = 40, lr: float = 0.1) -> StageResult:
    """The hand-written simple_net (w1, b1, w2, b2 from init_params), Learner.fit(40, 0.1). Not in the book's
    table: with std-1 random weights it starts far off, which shows why layers scale their initial weights."""
    torch.manual_seed(seed)
    model = SimpleNetByHand()
    rec = Recorder()
    learn = Learner(model, data.dls(seed), mnist_loss, opt_func=SGD, metrics=[batch_accuracy], cbs=[rec],
                    params=model.parameters())
    learn.fit(epochs, lr)
    history = [round(log["batch_accuracy"], 4) for log in rec.logs]
    return StageResult("simple net by hand", history[-1], 0.9828, epochs, 0.0, history, {"model": model, "recorder": rec})
