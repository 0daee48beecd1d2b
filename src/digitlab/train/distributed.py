"""Data-parallel training across processes with torch.distributed, as a callback around the one Learner.

Launch with PyTorch's own launcher, `torchrun --nproc-per-node N -m digitlab train ...` (or `digitlab train
--nproc N`, which starts torchrun for you). Each process trains on its shard of every epoch's order (the same
seeded permutation on every rank, cut as DistributedSampler cuts it), DistributedDataParallel averages the
gradients, validation sums are all-reduced so every rank reports the same numbers, and only rank 0 writes.

The global batch is `bs`: each of the N processes takes bs/N per step, so the learning rate that suits `bs` on
one process suits it on N. BatchNorm statistics are synchronised across processes (torch's SyncBatchNorm on
GPUs, SyncBatchNorm2d below on CPUs, where torch's is not supported).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError
from .callback import Callback

TIMEOUT = timedelta(seconds=int(os.environ.get("DIGITLAB_DIST_TIMEOUT", "120")))


def world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) for a single process."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def is_distributed() -> bool:
    return world()[1] > 1


def init(device: torch.device) -> torch.device:
    """Join the process group (nccl for GPUs, gloo for CPUs); returns this rank's device."""
    rank, size, local = world()
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=size,
                                timeout=TIMEOUT)
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_from_rank0(value: str, device: torch.device) -> str:
    """Rank 0's string (say, the run folder it made) on every rank."""
    init(device)
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class AllReduceSum(torch.autograd.Function):
    """Sum a tensor over all processes; the gradient of each input is the sum of the gradients of the output."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose batch statistics are taken over the batches of all processes (works with gloo on CPU).

    Sums and sums of squares are all-reduced with a differentiable sum (AllReduceSum), so gradients flow through
    the shared statistics exactly as in one process that saw the whole global batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        local = torch.stack([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3))])      # (2, C)
        stats = AllReduceSum.apply(local)                                     # summed over ranks
        n = torch.tensor([x.numel() / x.shape[1]], device=x.device)
        dist.all_reduce(n)
        mean = stats[0] / n
        var = stats[1] / n - mean * mean                                      # biased, as BatchNorm normalises
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 0.1
            self.running_mean.lerp_(mean.detach(), m)
            self.running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), m)
            self.num_batches_tracked += 1
        scale = self.weight * (var + self.eps).rsqrt()
        return x * scale[None, :, None, None] + (self.bias - mean * scale)[None, :, None, None]


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Swap BatchNorm2d layers for their synchronised form, sharing their parameters (state dicts unchanged)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats)
            # the very same parameters and buffers: the optimizer, made before the swap, keeps updating them
            sync.weight, sync.bias = child.weight, child.bias
            sync.running_mean, sync.running_var = child.running_mean, child.running_var
            sync.num_batches_tracked = child.num_batches_tracked
            setattr(model, name, sync)
        else:
            convert_sync_batchnorm(child, device)
    return model


class DataParallel(Callback):
    """Wraps the model in DistributedDataParallel for the fit, and sums each pass's loss and metric totals
    across processes so that every rank's log is the global one."""
    order = -10

    def __init__(self, sync_bn: bool = True):
        self.sync_bn = sync_bn

    def before_fit(self, learn):
        device = next(learn.model.parameters()).device
        if self.sync_bn:
            learn.model = convert_sync_batchnorm(learn.model, device)
        learn.model = nn.parallel.DistributedDataParallel(
            learn.model, device_ids=[device] if device.type == "cuda" else None)

    def after_pass(self, learn):
        count = torch.tensor([float(learn.count)], device=learn.sums.device)
        dist.all_reduce(learn.sums)
        dist.all_reduce(count)
        learn.count = int(count.item())

    def cleanup_fit(self, learn):
        if isinstance(learn.model, nn.parallel.DistributedDataParallel):
            learn.model = learn.model.module


def launch(nproc: int, argv: list[str]) -> int:
    """Run `digitlab <argv>` under torchrun with `nproc` processes on this machine; returns its exit status."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}.")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "digitlab", *argv]
    return subprocess.call(cmd)
