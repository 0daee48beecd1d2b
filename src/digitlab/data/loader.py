"""Our DataLoader: mini-batches as index slices of tensors, with no per-item Python and no collation.

Each epoch's order is a permutation drawn from (seed, epoch) alone, so an epoch can be replayed exactly (resume)
and every process of a distributed run draws the same order and takes its own shard of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice
from typing import Iterator

import torch

from ..errors import DataError


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of range(n) that depends only on (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


class DataLoader:
    """Iterate (xb, yb) mini-batches over tensors `x` and `y` that share their first dimension.

    shuffle: a new order every epoch (each `iter` is one epoch; `set_epoch` picks it explicitly).
    rank/world_size: take every world_size-th index of the epoch's order, as DistributedSampler does; with
        `pad` the shards are made equal by repeating the first items (training), without it they are exact
        (validation, whose totals are summed across processes).
    device: where the whole data set is placed once, so that batching is a slice on that device.
    tfm: applied to each xb after batching (e.g. uint8 images to floats), so the stored data can stay compact.
    allow_empty: accept no items (an empty loader yields no batches) instead of refusing them.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bs: int = 64, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, device: str | torch.device | None = None, rank: int = 0,
                 world_size: int = 1, tfm=None, pad: bool = True, allow_empty: bool = False):
        if len(x) != len(y):
            raise DataError(f"x has {len(x)} items but y has {len(y)}: they must match.")
        if len(x) == 0 and not allow_empty:  # allowed: the validation loader of a run with no validation split
            raise DataError("the data set is empty: there is nothing to train or validate on.")
        if bs < 1:
            raise DataError(f"batch size must be at least 1, got {bs}.")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside world size {world_size}.")
        self.x, self.y = (x.to(device), y.to(device)) if device is not None else (x, y)
        self.bs, self.shuffle, self.seed, self.drop_last = bs, shuffle, seed, drop_last
        self.rank, self.world_size, self.epoch, self.tfm, self.pad = rank, world_size, 0, tfm, pad

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def n_items(self) -> int:
        """How many items this rank sees per epoch."""
        if self.world_size == 1:
            return len(self.x)
        return math.ceil(len(self.x) / self.world_size) if self.pad else len(range(self.rank, len(self.x), self.world_size))

    def __len__(self) -> int:
        return self.n_items // self.bs if self.drop_last else math.ceil(self.n_items / self.bs)

    def set_epoch(self, epoch: int) -> None:
        """Choose the order of the next iteration (the loader also counts epochs itself)."""
        self.epoch = epoch

    def indices(self) -> torch.Tensor | None:
        """This epoch's item order for this rank, or None for the natural order of one process."""
        n = len(self.x)
        if not self.shuffle and self.world_size == 1:
            return None
        order = epoch_permutation(n, self.seed, self.epoch) if self.shuffle else torch.arange(n)
        if self.world_size > 1:
            total = math.ceil(n / self.world_size) * self.world_size if self.pad else n
            order = torch.cat([order, order[: total - n]])[self.rank::self.world_size]
        return order.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self.indices()
        self.epoch += 1
        if idx is None:
            xbs, ybs = self.x.split(self.bs), self.y.split(self.bs)  # views: no copy at all
        else:
            x = self.x
            xbs = (x.index_select(0, bi) for bi in idx.split(self.bs))  # ~3x faster than x[bi] on CPU
            ybs = self.y.index_select(0, idx).split(self.bs)  # the targets are small: one gather per epoch
        for xb, yb in islice(zip(xbs, ybs), len(self)):
            yield (self.tfm(xb) if self.tfm else xb), yb


@dataclass
class DataLoaders:
    """A training and a validation DataLoader, as the Learner takes them."""
    train: DataLoader
    valid: DataLoader

    @property
    def device(self) -> torch.device:
        return self.train.device
