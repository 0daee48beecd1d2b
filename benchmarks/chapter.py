"""The chapter's training stages, ours against two baselines, in one process.

Baseline 1, the book's way: a Python list of (x, y) tuples through torch.utils.data.DataLoader with default
collation (which stacks 256 tensors per batch), and a hand-written loop (torch.optim.SGD stands in for fastai's
SGD, and a plain loop for fastai's Learner). Baseline 2, plain idiomatic PyTorch: TensorDataset +
torch.utils.data.DataLoader + torch.optim.SGD. Ours: digitlab's DataLoader (index slices, no collation) and Learner.
Each of the three is warmed up once per stage (untimed), then the three run interleaved --repeats times (each
repeat with the next seed) and every figure is a median over the repeats.
Run: python -m benchmarks.chapter [--repeats 5] [--as-avx2]

`--as-avx2` runs it in a child process told to dispatch as an AVX2-only CPU (ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2, benchmarks.precision.AVX2_ENV) and records results/chapter-avx2.json; every record names
its machine class.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import TensorDataset

from digitlab.chapter.reproduce import STAGES
from digitlab.chapter.stages import ChapterData

from digitlab.hardware import machine_class

from .common import median, timed, write_record
from .precision import AVX2_ENV


def mnist_loss(preds, targets):
    """The book's own mnist_loss, as written there (ours computes the same numbers in fewer operations)."""
    preds = preds.sigmoid()
    return torch.where(targets == 1, 1 - preds, preds).mean()


def book_loaders(data: ChapterData, seed: int, tensor_dataset: bool = False):
    """Baseline 1: lists of (x, y) tuples; baseline 2 (tensor_dataset): TensorDatasets."""
    torch.manual_seed(seed)
    if tensor_dataset:
        dset, valid_dset = TensorDataset(data.train_x, data.train_y), TensorDataset(data.valid_x, data.valid_y)
    else:
        dset, valid_dset = list(zip(data.train_x, data.train_y)), list(zip(data.valid_x, data.valid_y))
    return TorchDataLoader(dset, batch_size=256, shuffle=True), TorchDataLoader(valid_dset, batch_size=256)


def book_validate_epoch(model, valid_dl) -> float:
    with torch.no_grad():
        accs = [((model(xb).sigmoid() > 0.5) == yb).float().mean() for xb, yb in valid_dl]
    return round(torch.stack(accs).mean().item(), 4)


def book_train(model, params, step, data, seed, epochs, val_loss=False, tensor_dataset=False) -> float:
    dl, valid_dl = book_loaders(data, seed, tensor_dataset)
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


def book_with_torch_sgd(model_fn, epochs, lr, val_loss=False, tensor_dataset=False):
    def run(data, seed):
        torch.manual_seed(seed)
        model = model_fn()
        opt = torch.optim.SGD(model.parameters(), lr)

        def step():
            opt.step()
            opt.zero_grad()
        return book_train(model, None, step, data, seed, epochs, val_loss, tensor_dataset)
    return run


def simple_net_model():
    return nn.Sequential(nn.Linear(784, 30), nn.ReLU(), nn.Linear(30, 1))


PLAIN = {  # baseline 2 for the stages that use nn modules and an optimizer object
    "linear_sgd": book_with_torch_sgd(lambda: nn.Linear(784, 1), 20, 1.0, tensor_dataset=True),
    "linear_learner": book_with_torch_sgd(lambda: nn.Linear(784, 1), 10, 1.0, val_loss=True, tensor_dataset=True),
    "simple_net": book_with_torch_sgd(simple_net_model, 40, 0.1, val_loss=True, tensor_dataset=True),
}


BOOK = {
    "linear_by_hand": book_linear_by_hand,
    "linear_basic_optim": book_with_torch_sgd(lambda: nn.Linear(784, 1), 20, 1.0),
    "linear_sgd": book_with_torch_sgd(lambda: nn.Linear(784, 1), 20, 1.0),
    "linear_learner": book_with_torch_sgd(lambda: nn.Linear(784, 1), 10, 1.0, val_loss=True),
    "simple_net": book_with_torch_sgd(simple_net_model, 40, 0.1, val_loss=True),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--plain-repeats", type=int, default=None, help="runs of baseline 2 per stage (default: "
                    "--repeats, like the others)")
    ap.add_argument("--as-avx2", action="store_true", help="dispatch as an AVX2-only CPU (in a child process)")
    args = ap.parse_args(argv)
    if args.as_avx2 and os.environ.get("ATEN_CPU_CAPABILITY") != "avx2":
        child = [sys.executable, "-m", "benchmarks.chapter", "--as-avx2", "--repeats", str(args.repeats),
                 "--seed", str(args.seed)] + (["--plain-repeats", str(args.plain_repeats)] if args.plain_repeats else [])
        raise SystemExit(subprocess.run(child, env={**os.environ, **AVX2_ENV}).returncode)
    args.plain_repeats = args.repeats if args.plain_repeats is None else args.plain_repeats
    data = ChapterData.load()
    rows = []
    print(f"{'stage':20s} {'book s':>8s} {'plain s':>8s} {'ours s':>8s} {'vs book':>8s} {'vs plain':>9s} "
          f"{'book acc':>9s} {'our acc':>8s}")
    for name, book_fn in BOOK.items():
        plain_fn = PLAIN.get(name)
        book_fn(data, args.seed), STAGES[name](data, seed=args.seed)  # warm-up, untimed
        if plain_fn:
            plain_fn(data, args.seed)
        book_t, plain_t, ours_t, book_acc, our_acc = [], [], [], [], []
        for r in range(args.repeats):  # interleaved, so all see the same machine noise
            t, acc = timed(book_fn, data, args.seed + r)
            book_t.append(t), book_acc.append(acc)
            if plain_fn and r < args.plain_repeats:
                plain_t.append(timed(plain_fn, data, args.seed + r)[0])
            res = STAGES[name](data, seed=args.seed + r)
            ours_t.append(res.seconds), our_acc.append(res.accuracy)
        row = {"stage": name, "book_s": median(book_t), "plain_s": median(plain_t) if plain_t else None,
               "ours_s": median(ours_t), "ratio": median(book_t) / median(ours_t),
               "ratio_plain": median(plain_t) / median(ours_t) if plain_t else None,
               "book_acc": median(book_acc), "our_acc": median(our_acc), "book_runs": book_t,
               "plain_runs": plain_t, "our_runs": ours_t}
        rows.append(row)
        plain = f"{row['plain_s']:8.3f}" if plain_t else f"{'-':>8s}"
        vs_plain = f"{row['ratio_plain']:8.2f}x" if plain_t else f"{'-':>9s}"
        print(f"{name:20s} {row['book_s']:8.3f} {plain} {row['ours_s']:8.3f} {row['ratio']:7.2f}x {vs_plain} "
              f"{row['book_acc']:9.4f} {row['our_acc']:8.4f}")
    path = write_record("chapter-avx2" if args.as_avx2 else "chapter", {
        "claim": "chapter stages: ours vs the book's way and plain PyTorch (medians)", "repeats": args.repeats,
        "plain_repeats": args.plain_repeats, "warm_up": "each of the three, once per stage", "rows": rows,
        "machine_class": machine_class(), "dispatch_forced": AVX2_ENV if args.as_avx2 else None})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
