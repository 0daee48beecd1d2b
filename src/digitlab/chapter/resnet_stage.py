"""The chapter's last stage as fastai runs it: cnn_learner(dls, resnet18, pretrained=False,
loss_func=F.cross_entropy, metrics=accuracy).fit_one_cycle(1, 0.1), built from our own parts.

Faithful to fastai: torchvision's resnet18 body (7x7 stride-2 stem, max-pool) on 3-channel 28x28 images, fastai's
head (concat pool, BatchNorm, dropout 0.25/0.5, 1024-512-2 bias-free linears), Adam with fastai's defaults
(betas 0.9/0.99, eps 1e-5, decoupled weight decay 0.01, none on BatchNorm parameters: `wd_bn_bias=False`), and
fit_one_cycle's defaults (pct_start 0.25, div 25, final lr lr_max/1e5, momentum 0.95-0.85-0.95), lr_max 0.1.
fastai's batch size too (64: larger batches train faster but end less accurate after one epoch, see
benchmarks/NOTES.md). For speed on 2 CPU cores: the forward pass in the precision the machine does natively
(digitlab.hardware: bfloat16 autocast where the CPU has AMX or AVX-512 BF16, where weights, gradients and Adam stay
float32; fp32 on an AVX2-only CPU, where bf16 would be emulated 14x slower), channels-last memory, kernels cut to the taps that meet a 28x28 image, and the convolutions on maps
of 4x4 pixels or less as one matrix product each (models/resnet.py); none of these changes what is computed
beyond bf16 rounding.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import nn

from ..data.loader import DataLoader, DataLoaders
from ..data.tasks import to_classes, to_input
from ..hardware import resolve_precision
from ..models.resnet import resnet18_fastai
from ..train.callbacks import Recorder
from ..train.learner import Learner
from ..train.losses import cross_entropy
from ..train.metrics import accuracy
from ..train.optim import Adam
from .stages import ChapterData, StageResult, timed

BS = 64  # fastai's; 128 (~10 s) and 256 (~6 s) are faster but reach only 0.9936 and ~0.99 in one epoch
VALID_BS = 1024


def fastai_dls(data: ChapterData, seed: int, bs: int = BS, device: str | None = None) -> DataLoaders:
    """3s and 7s as (N, 1, 28, 28) images, classes 0 (a 3) and 1 (a 7); like fastai's, the training loader
    drops its last partial batch (a batch of a few images would give BatchNorm noisy statistics)."""
    train, valid = to_classes(data.train, (3, 7)), to_classes(data.valid, (3, 7))
    return DataLoaders(DataLoader(train.images, train.labels, bs, shuffle=True, seed=seed, drop_last=True,
                                  tfm=to_input, device=device),
                       DataLoader(valid.images, valid.labels, VALID_BS, tfm=to_input, device=device))


def fastai_adam(params, lr: float, wd: float = 0.01) -> Adam:
    """fastai's Adam defaults; as Learner(wd_bn_bias=False), no weight decay on BatchNorm weights and biases."""
    params = list(params)
    decay, no_decay = [p for p in params if p.ndim > 1], [p for p in params if p.ndim <= 1]
    return Adam([{"params": decay}, {"params": no_decay, "wd": 0.0}], lr, mom=0.9, sqr_mom=0.99, eps=1e-5, wd=wd)


def fastai_learner(data: ChapterData, seed: int, cbs=(), bs: int | None = None, device: str = "cpu",
                   stem_pool: bool = True, label_smoothing: float = 0.0, ps: float = 0.5, wd: float = 0.01,
                   build: Callable[[], nn.Module] | None = None, precision: str = "auto") -> Learner:
    """The stage's Learner. The variants that benchmarks/NOTES.md measured against the book's accuracy:
    `stem_pool=False`, `label_smoothing`, the head's dropout `ps` and weight decay `wd` (cnn_learner's and
    Learner's knobs), and `build`, another model's builder (called after seeding). `precision`: auto (what the
    device does natively), bf16, fp16 or fp32."""
    torch.manual_seed(seed)
    model = build() if build else resnet18_fastai(n_classes=2, stem_pool=stem_pool, ps=ps)
    model = model.to(device, memory_format=torch.channels_last)  # oneDNN's (and cuDNN's) fast layout
    loss = partial(cross_entropy, label_smoothing=label_smoothing) if label_smoothing else cross_entropy
    return Learner(model, fastai_dls(data, seed, bs or BS, device), loss, opt_func=partial(fastai_adam, wd=wd),
                   metrics=[accuracy], cbs=list(cbs), precision=resolve_precision(precision, device))


@timed
def stage_resnet18(data: ChapterData, seed: int = 42, epochs: int = 1, lr: float = 0.1, device: str = "cpu",
                   **variant) -> StageResult:
    """resnet18 from scratch as fastai builds it, cross-entropy over 2 classes, fit_one_cycle(1, 0.1);
    `variant`: fastai_learner's stem_pool, label_smoothing, ps, wd or build."""
    rec = Recorder()
    learn = fastai_learner(data, seed, [rec], device=device, **variant)
    # fastai's final lr is lr_max/div_final; our schedule (torch's OneCycleLR) ends at lr_max/div/div_final
    learn.fit_one_cycle(epochs, lr, pct_start=0.25, div=25.0, div_final=1e5 / 25.0, moms=(0.95, 0.85, 0.95))
    history = [round(log["accuracy"], 4) for log in rec.logs]
    # not under "recorder": reproduce.write_plots draws that one with the book's "batch_accuracy" metric
    return StageResult("resnet18, fit_one_cycle", history[-1], 0.9971, epochs, 0.0, history,
                       {"model": learn.model, "ce_recorder": rec, "precision": learn.precision.name})
