"""A CNN built for speed on 2 CPU cores and on GPU: three wide convs, each followed by max-pool, BatchNorm, ReLU.

Pooling before BatchNorm and ReLU (ReLU is monotone, so max-pool and ReLU commute) runs those two element-wise
ops on a quarter of the activations; channels-last layout lets oneDNN pick its fast convolution kernels on CPU
(2.3x per batch on the 2-core Xeon here). Only the first conv, with one input channel, runs at 28x28.
(Tried and dropped: a 4x4 stride-2 stem at width 48 was 1.4x slower per epoch in real training.)
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Normalize, init_weights


class ChannelsLast(nn.Module):
    """Put the batch in channels-last memory layout (a no-op for the values)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def conv_pool_bn(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv (no bias) -> 2x2 max-pool -> BatchNorm -> ReLU: halves the size."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


def fastcnn(n_classes: int = 10, width: int = 32) -> nn.Sequential:
    """1x28x28 -> w x14x14 -> 2w x7x7 -> 4w x3x3 -> global max -> linear (94,186 parameters at width 32)."""
    w = width
    model = nn.Sequential(
        Normalize(), ChannelsLast(),
        conv_pool_bn(1, w),           # 28 -> 14
        conv_pool_bn(w, 2 * w),       # 14 -> 7
        conv_pool_bn(2 * w, 4 * w),   # 7 -> 3
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Linear(4 * w, n_classes),
    )
    model.apply(init_weights)
    return model.to(memory_format=torch.channels_last)


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv (no bias) -> BatchNorm -> ReLU: keeps the size."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def fastcnn_deep(n_classes: int = 10, width: int = 64) -> nn.Sequential:
    """fastcnn with two convs at each size (VGG-style), for accuracy on a GPU: 1x28x28 -> w x28x28 -> w x14x14
    -> 2w x7x7 -> 4w x3x3 -> global max -> linear (1.15M parameters and about 230 MFLOP per image at width 64,
    13x fastcnn's arithmetic)."""
    w = width
    model = nn.Sequential(
        Normalize(), ChannelsLast(),
        conv_bn_relu(1, w), conv_pool_bn(w, w),                # 28 -> 14
        conv_bn_relu(w, 2 * w), conv_pool_bn(2 * w, 2 * w),    # 14 -> 7
        conv_bn_relu(2 * w, 4 * w), conv_pool_bn(4 * w, 4 * w),  # 7 -> 3
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Linear(4 * w, n_classes),
    )
    model.apply(init_weights)
    return model.to(memory_format=torch.channels_last)


def convnet5x5(n_classes: int = 10) -> nn.Sequential:
    """An, Lee et al. 2020's "M5" (arXiv:2008.10400), a member for ensembles: five unpadded 5x5 conv-BN-ReLU
    layers of 32, 64, 96, 128 and 160 channels (28 -> 24 -> 20 -> 16 -> 12 -> 8 pixels, no pooling), then a
    bias-free linear of the flattened 160x8x8 map and BatchNorm of the scores (1.13M parameters, about 140 MFLOP
    per image). Unlike fastcnn_deep it never pools, so its mistakes should differ more from that model's."""
    widths = (1, 32, 64, 96, 128, 160)
    convs = [nn.Sequential(nn.Conv2d(a, b, 5, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True))
             for a, b in zip(widths, widths[1:])]
    model = nn.Sequential(Normalize(), ChannelsLast(), *convs, nn.Flatten(),
                          nn.Linear(160 * 8 * 8, n_classes, bias=False), nn.BatchNorm1d(n_classes))
    model.apply(init_weights)
    return model.to(memory_format=torch.channels_last)
