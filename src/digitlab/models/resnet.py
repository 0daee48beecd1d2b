"""ResNet-18 from scratch (He et al. 2015, BasicBlock, 2-2-2-2 blocks of 64-128-256-512 channels) for 1x28x28.

The ImageNet stem (7x7 stride-2 conv, then max-pool) would shrink a 28x28 digit to 7x7 before the first block;
here the stem is two 3x3 convs, the second with stride 2, so the four stages run at 14, 7, 4 and 2 pixels.
(A stride-1 stem keeps 28x28 in the first stage for 4x the compute, too slow for the 2-core CPU budget.)
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Normalize, conv_bn, init_weights


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut (1x1 conv-BN when the shape changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.convs = nn.Sequential(conv_bn(c_in, c_out, stride=stride), conv_bn(c_out, c_out, act=False))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else conv_bn(c_in, c_out, 1, stride, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


def zero_last_bn(block: BasicBlock) -> None:
    """Start each residual branch at zero (Goyal et al. 2017), so the untrained net is a shallow one."""
    nn.init.zeros_(block.convs[-1][1].weight)


class ResNet(nn.Module):
    """stem -> stages of BasicBlocks (each stage after the first starts by halving the size) -> pool -> linear."""

    def __init__(self, layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), n_classes: int = 10, stem: int = 32,
                 zero_init_residual: bool = True):
        super().__init__()
        self.stem = nn.Sequential(Normalize(), conv_bn(1, stem), conv_bn(stem, widths[0], stride=2))  # 28 -> 14
        blocks, c_in = [], widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            for j in range(n):
                blocks.append(BasicBlock(c_in, w, stride=2 if j == 0 and i > 0 else 1))
                c_in = w
        self.blocks = nn.Sequential(*blocks)  # 14 -> 7 -> 4 -> 2
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_classes))
        self.apply(init_weights)
        if zero_init_residual:
            for b in self.blocks:
                zero_last_bn(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def resnet18(n_classes: int = 10) -> ResNet:
    """ResNet-18: 2-2-2-2 BasicBlocks, 64-128-256-512 channels (about 11.2M parameters)."""
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), n_classes)
