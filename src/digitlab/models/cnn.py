"""A small, fast CNN for 28x28 digits: three conv-BN-ReLU stages with pooling, then a linear head."""

from __future__ import annotations

from torch import nn

from .layers import Normalize, conv_bn, init_weights


def cnn(n_classes: int = 10, width: int = 32) -> nn.Sequential:
    """1x28x28 -> width x14x14 -> 2w x7x7 -> 4w x3x3 -> pooled -> n_classes."""
    w = width
    model = nn.Sequential(
        Normalize(),
        conv_bn(1, w), nn.MaxPool2d(2),              # 28 -> 14
        conv_bn(w, 2 * w), nn.MaxPool2d(2),          # 14 -> 7
        conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),      # 7 -> 3
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Linear(4 * w, n_classes),
    )
    model.apply(init_weights)
    return model
