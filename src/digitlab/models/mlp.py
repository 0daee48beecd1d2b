"""The chapter's simple net: 784-30-1 with a ReLU in between, by hand and as nn.Sequential."""

from __future__ import annotations

import torch
from torch import nn

from .linear import init_params


class SimpleNetByHand:
    """The book's `simple_net` with explicit w1, b1, w2, b2."""

    def __init__(self, n_in: int = 28 * 28, n_hidden: int = 30, n_out: int = 1):
        self.w1, self.b1 = init_params((n_in, n_hidden)), init_params(n_hidden)
        self.w2, self.b2 = init_params((n_hidden, n_out)), init_params(n_out)

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        res = xb @ self.w1 + self.b1        # (bs, 784) -> (bs, 30)
        res = res.max(torch.tensor(0.0))    # ReLU
        return res @ self.w2 + self.b2      # (bs, 30) -> (bs, 1)

    def parameters(self) -> list[torch.Tensor]:
        return [self.w1, self.b1, self.w2, self.b2]


def simple_net(n_in: int = 28 * 28, n_hidden: int = 30, n_out: int = 1) -> nn.Sequential:
    """The same net from PyTorch's layers (weights initialised by nn.Linear)."""
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_out))
