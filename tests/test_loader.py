"""Our DataLoader: every item once per epoch, a new order each epoch, deterministic under a seed."""

import pytest
import torch

from digitlab.data import DataLoader
from digitlab.errors import DataError


def items(n=1000):
    x = torch.arange(n, dtype=torch.float32).view(n, 1).repeat(1, 3)
    return x, torch.arange(n)


def epoch_order(dl):
    return torch.cat([yb for _, yb in dl])


def test_every_item_once_per_epoch_with_matching_pairs():
    x, y = items(1000)
    dl = DataLoader(x, y, bs=64, shuffle=True, seed=1)
    assert len(dl) == 16
    for _ in range(3):
        seen = []
        for xb, yb in dl:
            assert torch.equal(xb[:, 0].long(), yb)  # x and y stay paired
            seen.append(yb)
        assert sorted(torch.cat(seen).tolist()) == list(range(1000))


def test_reshuffles_each_epoch_and_is_deterministic_under_a_seed():
    x, y = items()
    a, b = DataLoader(x, y, 64, shuffle=True, seed=7), DataLoader(x, y, 64, shuffle=True, seed=7)
    a1, a2 = epoch_order(a), epoch_order(a)
    assert not torch.equal(a1, a2)
    assert torch.equal(a1, epoch_order(b)) and torch.equal(a2, epoch_order(b))
    assert not torch.equal(a1, epoch_order(DataLoader(x, y, 64, shuffle=True, seed=8)))
    b.set_epoch(1)  # replay an epoch, as a resumed run does
    assert torch.equal(epoch_order(b), a2)


def test_unshuffled_batches_are_views_in_order():
    x, y = items(100)
    dl = DataLoader(x, y, bs=30)
    batches = list(dl)
    assert [len(yb) for _, yb in batches] == [30, 30, 30, 10]
    assert batches[0][0].data_ptr() == x.data_ptr()  # a slice, not a copy
    assert torch.equal(epoch_order(dl), y)


@pytest.mark.parametrize("kwargs", [{}, {"drop_last": True}, {"rank": 1, "world_size": 3},
                                    {"tfm": lambda b: b.float() / 255}])
def test_shuffled_batches_are_the_epochs_order_gathered_batch_by_batch(kwargs):
    """Targets are gathered once per epoch and images once per batch: the batches must be exactly those of the
    epoch's order, and a batch kept by the caller must not change when later batches or epochs are drawn."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (1001, 5), generator=g, dtype=torch.uint8), torch.randn(1001, 1, generator=g)
    dl = DataLoader(x, y, 64, shuffle=True, seed=5, **kwargs)
    tfm = kwargs.get("tfm", lambda b: b)
    dl.set_epoch(2)
    order = dl.indices()
    batches = list(dl)
    assert len(batches) == len(dl) == (15 if kwargs.get("drop_last") else len(order.split(64)))
    for (xb, yb), bi in zip(batches, order.split(64)):
        assert torch.equal(xb, tfm(x[bi])) and torch.equal(yb, y[bi])
    kept = [(xb.clone(), yb.clone()) for xb, yb in batches]
    list(dl), list(dl)
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(kept, batches))


def test_drop_last():
    x, y = items(100)
    assert [len(yb) for _, yb in DataLoader(x, y, 30, drop_last=True)] == [30, 30, 30]


def test_shards_partition_the_epoch_across_ranks():
    x, y = items(1001)
    shards = [epoch_order(DataLoader(x, y, 50, shuffle=True, seed=3, rank=r, world_size=4)) for r in range(4)]
    assert all(len(s) == 251 for s in shards)  # padded to equal size, as DistributedSampler does
    assert set(torch.cat(shards).tolist()) == set(range(1001))


def test_places_data_on_the_device():
    x, y = items(10)
    dl = DataLoader(x, y, 4, device="cpu")
    assert dl.device.type == "cpu" and next(iter(dl))[0].device.type == "cpu"


@pytest.mark.parametrize("args, message", [
    ((torch.zeros(3, 2), torch.zeros(4)), "x has 3 items but y has 4"),
    ((torch.zeros(0, 2), torch.zeros(0)), "empty"),
])
def test_bad_inputs(args, message):
    with pytest.raises(DataError, match=message):
        DataLoader(*args)
