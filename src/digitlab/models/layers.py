"""Small building blocks shared by the image models, and the one weight initialisation they use."""

from __future__ import annotations

import torch
from torch import nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # of the training images scaled to [0, 1]


class Normalize(nn.Module):
    """(x - mean) / std with fixed buffers, so a saved model takes plain [0, 1] images (and so does its export)."""

    def __init__(self, mean: float = MNIST_MEAN, std: float = MNIST_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def set_normalization(model: nn.Module, mean: float, std: float) -> nn.Module:
    """Give every Normalize layer of a model its data set's statistics (saved with the weights as buffers)."""
    for m in model.modules():
        if isinstance(m, Normalize):
            m.mean.fill_(mean)
            m.std.fill_(std)
    return model


def conv_bn(c_in: int, c_out: int, ks: int = 3, stride: int = 1, act: bool = True) -> nn.Sequential:
    """conv (no bias: BatchNorm has one) -> BatchNorm -> ReLU."""
    layers = [nn.Conv2d(c_in, c_out, ks, stride, padding=ks // 2, bias=False), nn.BatchNorm2d(c_out)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def init_weights(m: nn.Module) -> None:
    """Kaiming-normal for convs and linears feeding ReLUs, zero biases, BatchNorm at identity."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
