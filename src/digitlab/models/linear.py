"""The linear model of the chapter, by hand (init_params, linear1) and as nn.Linear."""

from __future__ import annotations

import torch
from torch import nn


def init_params(size, std: float = 1.0) -> torch.Tensor:
    """Random weights that autograd tracks (the book's init_params)."""
    return (torch.randn(size) * std).requires_grad_()


class Linear1:
    """The book's `linear1`: xb @ weights + bias, with the parameters as plain tensors."""

    def __init__(self, n_in: int = 28 * 28, std: float = 1.0):
        self.weights = init_params((n_in, 1), std)
        self.bias = init_params(1, std)

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        return xb @ self.weights + self.bias  # (bs, 784) @ (784, 1) -> (bs, 1)

    def parameters(self) -> list[torch.Tensor]:
        return [self.weights, self.bias]


def linear_model(n_in: int = 28 * 28, n_out: int = 1) -> nn.Linear:
    """nn.Linear does what init_params and linear1 do together."""
    return nn.Linear(n_in, n_out)
