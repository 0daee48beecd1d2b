"""The chapter's training stages, ours against the book's way, in one process.

The book's way: a Python list of (x, y) tuples through torch.utils.data.DataLoader with default collation (which
stacks 256 tensors per batch), and a hand-written loop (torch.optim.SGD stands in for fastai's SGD, and a plain
loop for fastai's Learner). Ours: digitlab's DataLoader (index slices, no collation) and Learner.
Run: python -m benchmarks.chapter [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader as TorchDataLoader

from digitlab.chapter.stages import STAGES, ChapterData
from digitlab.train.losses import mnist_loss

from .common import median, timed, write_record


def book_loaders(data: ChapterData, seed: int):
    torch.manual_seed(seed)
    dset = list(zip(data.train_x, data.train_y))
    valid_dset = list(zip(data.valid_x, data.valid_y))
    return TorchDataLoader(dset, batch_size=256, shuffle=True), TorchDataLoader(valid_dset, batch_size=256)


def book_validate_epoch(model, valid_dl) -> float:
    with torch.no_grad():
        accs = [((model(xb).sigmoid() > 0.5) == yb).float().mean() for xb, yb in valid_dl]
    return round(torch.stack(accs).mean().item(), 4)


def book_train(model, params, step, data, seed, epochs, val_loss=False) -> float:
    dl, valid_dl = book_loaders(data, seed)
    for _ in range(epochs):
        for xb, yb in dl:
            loss = mnist_loss(model(xb), yb)
            loss.backward()
            step()
        if val_loss:  # the Learner also reports the validation loss each epoch
            with torch.no_grad():
                [mnist_loss(model(xb), yb) for xb, yb in valid_dl]
        acc = book_validate_epoch(model, valid_dl)
    return acc


def book_linear_by_hand(data, seed, epochs=20, lr=1.0):
    torch.manual_seed(seed)
    weights, bias = (torch.randn(784, 1)).requires_grad_(), torch.randn(1).requires_grad_()

    def step():
        for p in (weights, bias):
            p.data -= p.grad * lr
            p.grad.zero_()
    return book_train(lambda xb: xb @ weights + bias, None, step, data, seed, epochs)


def book_with_torch_sgd(model_fn, epochs, lr, val_loss=False):
    def run(data, seed):
        torch.manual_seed(seed)
        model = model_fn()
        opt = torch.optim.SGD(model.parameters(), lr)

        def step():
            opt.step()
            opt.zero_grad()
        return book_train(model, None, step, data, seed, epochs, val_loss)
    return run


BOOK = {
    "linear_by_hand": book_linear_by_hand,
    "linear_basic_optim": book_with_torch_sgd(lambda: nn.Linear(784, 1), 20, 1.0),
    "linear_sgd": book_with_torch_sgd(lambda: nn.Linear(784, 1), 20, 1.0),
    "linear_learner": book_with_torch_sgd(lambda: nn.Linear(784, 1), 10, 1.0, val_loss=True),
    "simple_net": book_with_torch_sgd(lambda: nn.Sequential(nn.Linear(784, 30), nn.ReLU(), nn.Linear(30, 1)), 40, 0.1, val_loss=True),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    data = ChapterData.load()
    rows = []
    print(f"{'stage':20s} {'book s':>8s} {'ours s':>8s} {'ratio':>6s} {'book acc':>9s} {'our acc':>8s}")
    for name, book_fn in BOOK.items():
        book_fn(data, args.seed), STAGES[name](data, seed=args.seed)  # warm-up
        book_t, ours_t, book_acc, our_acc = [], [], [], []
        for r in range(args.repeats):  # interleaved, so both see the same machine noise
            t, acc = timed(book_fn, data, args.seed + r)
            book_t.append(t), book_acc.append(acc)
            res = STAGES[name](data, seed=args.seed + r)
            ours_t.append(res.seconds), our_acc.append(res.accuracy)
        row = {"stage": name, "book_s": median(book_t), "ours_s": median(ours_t),
               "ratio": median(book_t) / median(ours_t), "book_acc": median(book_acc), "our_acc": median(our_acc),
               "book_runs": book_t, "our_runs": ours_t}
        rows.append(row)
        print(f"{name:20s} {row['book_s']:8.3f} {row['ours_s']:8.3f} {row['ratio']:5.2f}x {row['book_acc']:9.4f} {row['our_acc']:8.4f}")
    path = write_record("chapter", {"claim": "chapter stages: ours vs the book's way (median of repeats)",
                                    "repeats": args.repeats, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
