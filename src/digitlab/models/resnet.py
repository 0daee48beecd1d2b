"""ResNet-18 from scratch (He et al. 2015, BasicBlock, 2-2-2-2 blocks of 64-128-256-512 channels) for 1x28x28.

The ImageNet stem (7x7 stride-2 conv, then max-pool) would shrink a 28x28 digit to 7x7 before the first block;
here the stem is two 3x3 convs, the second with stride 2, so the four stages run at 14, 7, 4 and 2 pixels.
(A stride-1 stem keeps 28x28 in the first stage for 4x the compute, too slow for the 2-core CPU budget.)

`resnet18_fastai` is what fastbook's `cnn_learner(dls, resnet18, pretrained=False)` builds instead: torchvision's
resnet18 body (ImageNet stem, so the stages run at 7, 4, 2 and 1 pixels; torchvision's init) on 3-channel images,
and fastai's head (concat pool, BatchNorm, dropout, two bias-free linears; kaiming init). Two exact speed-ups
for 2 CPU cores: `trim_dead_taps` cuts the kernel taps that only ever meet padding on 28x28 inputs, and
`SmallConv2d` computes the convolutions on maps of 4x4 pixels or less (or strided) as one matrix product each.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Normalize, conv_bn, init_weights


class Im2col(torch.autograd.Function):
    """(N, H+2p, W+2p, C) padded channels-last image -> (N, Ho, Wo, k*k*C): each output pixel's window as one row.
    The backward adds each tap's gradient into one buffer (autograd through k*k slices would make k*k buffers)."""

    @staticmethod
    def forward(ctx, xp: torch.Tensor, k: int, s: int, ho: int, wo: int) -> torch.Tensor:
        ctx.shape, ctx.args = xp.shape, (k, s, ho, wo)
        return torch.cat([xp[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s]
                          for i in range(k) for j in range(k)], -1)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (k, s, ho, wo), c = ctx.args, ctx.shape[-1]
        gx = g.new_zeros(ctx.shape)
        for t in range(k * k):
            i, j = divmod(t, k)
            gx[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s] += g[..., t * c:(t + 1) * c]
        return gx, None, None, None, None


class SmallConv2d(nn.Conv2d):
    """nn.Conv2d computed as one matrix product (im2col, channels-last) on small or strided inputs.

    On the last three stages' 4-, 2- and 1-pixel maps oneDNN's convolution is far from its matrix-product speed, its
    backward pass above all (measured in benchmarks/NOTES.md); the same sums as one GEMM over an explicit window
    matrix run several times faster there. Bigger stride-1 maps keep the library convolution, which wins there.
    The parameters and the result are nn.Conv2d's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        (k, k2), (s, s2), (p, p2) = self.kernel_size, self.stride, self.padding
        if (h * w > 16 and s == 1) or k != k2 or s != s2 or p != p2 or self.groups != 1 or self.dilation != (1, 1):
            return super().forward(x)
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        xp = torch.nn.functional.pad(x.permute(0, 2, 3, 1), (0, 0, p, p, p, p))
        cols = Im2col.apply(xp, k, s, ho, wo) if k > 1 or s > 1 else xp
        wm = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)  # a view for channels-last weights
        y = torch.nn.functional.linear(cols.reshape(-1, k * k * c), wm, self.bias)
        return y.view(n, ho, wo, -1).permute(0, 3, 1, 2)  # NCHW shape, channels-last memory


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut (1x1 conv-BN when the shape changes), then ReLU.
    small_convs: SmallConv2d instead of nn.Conv2d (same parameters and result; faster on maps of 4x4 or less)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, small_convs: bool = False):
        super().__init__()
        self.convs = nn.Sequential(conv_bn(c_in, c_out, stride=stride), conv_bn(c_out, c_out, act=False))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else conv_bn(c_in, c_out, 1, stride, act=False)
        self.act = nn.ReLU(inplace=True)
        if small_convs:
            for seq in (*self.convs, self.shortcut):
                if isinstance(seq, nn.Sequential):
                    conv = seq[0]
                    seq[0] = SmallConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                         conv.padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


def zero_last_bn(block: BasicBlock) -> None:
    """Start each residual branch at zero (Goyal et al. 2017), so the untrained net is a shallow one."""
    nn.init.zeros_(block.convs[-1][1].weight)


class AdaptiveConcatPool2d(nn.Module):
    """fastai's pool: global max and global average, concatenated (max first), so the head sees 2x the channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax((2, 3)), x.mean((2, 3))], 1)


class ExpandChannels(nn.Module):
    """(N, 1, H, W) -> (N, c, H, W) as a view: the grey image as the RGB image fastai's PIL loader makes of it."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, self.c, -1, -1)


def imagenet_stem(c_out: int = 64, c_in: int = 3, pool: bool = True) -> nn.Sequential:
    """torchvision's stem: 7x7 stride-2 conv-BN-ReLU, then 3x3 stride-2 max-pool (28 -> 14 -> 7); without `pool`
    the first stage sees 14x14."""
    layers = [nn.Conv2d(c_in, c_out, 7, 2, 3, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, *([nn.MaxPool2d(3, 2, 1)] if pool else []))


def fastai_head(nf: int, n_classes: int, lin_ftrs: int = 512, ps: float = 0.5) -> nn.Sequential:
    """fastai's create_head: concat pool, flatten, then [BN1d, dropout, bias-free linear] twice with a ReLU between;
    the first dropout is half the last (0.25, 0.5). Init as fastai: kaiming-normal linears, BN bias 1e-3."""
    layers = [AdaptiveConcatPool2d(), nn.Flatten()]
    for n_in, n_out, p, act in ((2 * nf, lin_ftrs, ps / 2, True), (lin_ftrs, n_classes, ps, False)):
        layers += [nn.BatchNorm1d(n_in), nn.Dropout(p), nn.Linear(n_in, n_out, bias=False)]
        if act:
            layers.append(nn.ReLU(inplace=True))
    head = nn.Sequential(*layers)
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.constant_(m.bias, 1e-3)
    return head


def torchvision_init(m: nn.Module) -> None:
    """torchvision's ResNet init: kaiming-normal convs scaled by fan-out, BatchNorm at identity."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class ResNet(nn.Module):
    """stem -> stages of BasicBlocks (each stage after the first starts by halving the size) -> head.

    fastai=False: our digit stem (two 3x3 convs) and an average-pool + linear head, zero-init residual branches.
    fastai=True: the ImageNet stem on the image repeated to 3 channels, fastai's head, torchvision's init.
    """

    def __init__(self, layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), n_classes: int = 10, stem: int = 32,
                 zero_init_residual: bool = True, fastai: bool = False, stem_pool: bool = True, head_ps: float = 0.5):
        super().__init__()
        if fastai:
            # 28 -> 7 (-> 14 without the stem's max-pool)
            self.stem = nn.Sequential(Normalize(), ExpandChannels(3), imagenet_stem(widths[0], pool=stem_pool))
        else:
            self.stem = nn.Sequential(Normalize(), conv_bn(1, stem), conv_bn(stem, widths[0], stride=2))  # 28 -> 14
        blocks, c_in = [], widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            for j in range(n):
                blocks.append(BasicBlock(c_in, w, 2 if j == 0 and i > 0 else 1, small_convs=fastai))
                c_in = w
        self.blocks = nn.Sequential(*blocks)  # 14 -> 7 -> 4 -> 2 (fastai: 7 -> 4 -> 2 -> 1)
        if fastai:
            self.apply(torchvision_init)
            self.head = fastai_head(c_in, n_classes, ps=head_ps)
        else:
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


def resnet18_fastai(n_classes: int = 10, trim: bool = True, stem_pool: bool = True, ps: float = 0.5) -> ResNet:
    """fastai's cnn_learner(resnet18, pretrained=False) model: ImageNet stem, fastai head, torchvision's init
    (11.7M parameters); with `trim`, the kernels are cut to the taps that meet a 28x28 image (4.8M parameters),
    which computes the same function. `stem_pool=False` drops the stem's max-pool (stages at 14, 7, 4 and 2 pixels,
    about 3.5x the arithmetic); `ps` is the head's dropout, as cnn_learner's `ps`."""
    model = ResNet((2, 2, 2, 2), (64, 128, 256, 512), n_classes, zero_init_residual=False, fastai=True,
                   stem_pool=stem_pool, head_ps=ps)
    return trim_dead_taps(model, torch.zeros(2, 1, 28, 28)) if trim else model


def live_taps(size: int, k: int, stride: int, pad: int) -> tuple[int, int]:
    """The kernel rows [a, b) that meet a real pixel of a `size`-pixel input at some output position."""
    n_out = (size + 2 * pad - k) // stride + 1
    used = [ky for o in range(n_out) for ky in range(k) if 0 <= o * stride - pad + ky < size]
    return min(used), max(used) + 1


@torch.no_grad()
def trim_dead_taps(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """Cut every square conv kernel down to the taps that can meet a pixel of inputs shaped like `example`.

    On 28x28 digits the ImageNet stem leaves torchvision's last stage at 1 pixel (2 for its first conv's input), so
    8 of the 9 taps of its 3x3 kernels only ever multiply padding: their gradient is exactly zero, Adam never moves
    them (only weight decay shrinks them) and they never change an output. The cut conv (smaller kernel, padding
    reduced to match, weights sliced from the original) computes the same function for such inputs, and saves
    their compute and optimizer traffic (6.9M of resnet18's 11.7M parameters are such taps).
    """
    sizes: dict[nn.Module, int] = {}
    hooks = [m.register_forward_pre_hook(lambda m, args: sizes.__setitem__(m, args[0].shape[-1]))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    training = model.training
    model.eval()(example)
    model.train(training)
    for h in hooks:
        h.remove()
    for parent in list(model.modules()):
        for name, conv in parent.named_children():
            if not isinstance(conv, nn.Conv2d) or conv not in sizes:
                continue
            (k, k2), (s, s2), (p, p2) = conv.kernel_size, conv.stride, conv.padding
            if k != k2 or s != s2 or p != p2 or conv.groups != 1 or conv.dilation != (1, 1):
                continue
            a, b = live_taps(sizes[conv], k, s, p)
            if (a, b) == (0, k):
                continue
            cut = SmallConv2d(conv.in_channels, conv.out_channels, b - a, s, p - a, bias=conv.bias is not None)
            cut.weight.copy_(conv.weight[:, :, a:b, a:b])
            if conv.bias is not None:
                cut.bias.copy_(conv.bias)
            setattr(parent, name, cut)
    return model
