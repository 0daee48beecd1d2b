"""Stage 3 of the chapter: a linear model trained by hand, step by step, as the book writes it.

The gradient step is `p.data -= p.grad * lr`: assigning to `.data` keeps the update itself out of autograd.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..data.loader import DataLoader
from ..train.losses import mnist_loss
from ..train.metrics import batch_accuracy


def calc_grad(xb: torch.Tensor, yb: torch.Tensor, model: Callable) -> None:
    """Predict, compute the loss, and let autograd add the gradients to each parameter's .grad."""
    preds = model(xb)
    loss = mnist_loss(preds, yb)
    loss.backward()


def train_epoch(model: Callable, lr: float, params: Iterable[torch.Tensor], dl: DataLoader) -> None:
    """One pass over the training data, one gradient step per mini-batch."""
    for xb, yb in dl:
        calc_grad(xb, yb, model)
        for p in params:
            p.data -= p.grad * lr
            p.grad.zero_()  # backward() adds to .grad, so clear it for the next batch


@torch.no_grad()
def validate_epoch(model: Callable, valid_dl: DataLoader) -> float:
    """Accuracy over the whole validation set. (The book averages per-batch accuracies, which weights the short
    last batch too heavily; this counts every image once.)"""
    correct = sum(batch_accuracy(model(xb), yb) * len(yb) for xb, yb in valid_dl)
    return round((correct / valid_dl.n_items).item(), 4)
