"""Ten digits: our fast CNN against the canonical PyTorch MNIST example, time per epoch and time to 99.0%.

Claim checked: on 2 CPU cores, digitlab's `fastcnn` (our DataLoader, Learner, SGD and one-cycle) reaches 99.0% test
accuracy in at most 30 s of training and at least 5x sooner than pytorch/examples mnist/main.py (two 3x3 convs of
32 and 64 channels, max-pool, dropout, 9216-128-10, Adadelta lr 1.0 with StepLR 0.7, batch 64, fed by
torch.utils.data.DataLoader over a TensorDataset), both run in this process, one after the other.

Only training time counts; the clock stops while the 10000 test images are scored. The reference is scored every
quarter epoch (so it is not penalised for the epoch granularity) and stops at 99.0%, after --ref-cap seconds of
training, or once it has trained --ref-stop-ratio (5.5) times as long as our slowest seed took to reach 99.0% (the
ratio is then proven without waiting for more). Ours is scored at the end of each epoch of its one-cycle schedule
(its accuracy mid-schedule, at a high rate, is not what the schedule aims for). Ours runs each seed twice,
interleaved: forward pass under bfloat16 autocast (AMX tiles on this Xeon) and in float32, so the record holds
both our bf16 against the reference's fp32 and fp32 against fp32 (--precisions bf16 drops the second). The
reference runs in float32 as published, --ref-seeds times. Times are medians over the runs (the claim also
names our slowest seed).
Run: python -m benchmarks.tendigits [--seeds 2] [--ref-seeds 2] [--precisions bf16 fp32] [--ref-cap 180]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import TensorDataset

from digitlab.data.loader import DataLoader, DataLoaders
from digitlab.data.tasks import load_task, to_input
from digitlab.models import fastcnn
from digitlab.train.callback import Callback
from digitlab.train.learner import Learner
from digitlab.train.losses import cross_entropy
from digitlab.train.metrics import accuracy
from digitlab.train.optim import SGD

from .common import median, write_record

TARGET = 0.99


class ReferenceNet(nn.Module):
    """pytorch/examples mnist/main.py's Net, as published."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


@torch.no_grad()
def reference_accuracy(model, test_dl) -> float:
    model.eval()
    correct = sum((model(x).argmax(1) == y).sum().item() for x, y in test_dl)
    model.train()
    return correct / len(test_dl.dataset)


def run_reference(data, seed: int, cap: float, max_epochs: int = 14) -> dict:
    """The example's training loop; train seconds and test accuracy at every quarter epoch."""
    torch.manual_seed(seed)
    norm = lambda s: ((s.images.float() / 255 - 0.1307) / 0.3081).unsqueeze(1)  # noqa: E731 (its Normalize)
    train_dl = TorchDataLoader(TensorDataset(norm(data.train), data.train.labels), batch_size=64, shuffle=True)
    test_dl = TorchDataLoader(TensorDataset(norm(data.valid), data.valid.labels), batch_size=1000)
    model = ReferenceNet()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    checks, seconds, every = [], 0.0, math.ceil(len(train_dl) / 4)
    epoch_seconds = []
    for epoch in range(max_epochs):
        start = time.perf_counter()
        for i, (x, y) in enumerate(train_dl):
            loss = F.nll_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if (i + 1) % every == 0 or i + 1 == len(train_dl):
                seconds += time.perf_counter() - start
                acc = reference_accuracy(model, test_dl)
                checks.append({"epoch": epoch + (i + 1) / len(train_dl), "seconds": seconds, "accuracy": acc})
                print(f"  reference  epoch {checks[-1]['epoch']:5.2f}  {seconds:7.1f}s  {acc:.4f}", flush=True)
                if acc >= TARGET or seconds > cap:
                    return summary("reference", checks, epoch_seconds, len(train_dl), i + 1)
                start = time.perf_counter()
        sched.step()
        epoch_seconds.append(seconds - sum(epoch_seconds))
    return summary("reference", checks, epoch_seconds, len(train_dl), len(train_dl))


class Bf16Autocast(Callback):
    """Run the forward pass and loss of every batch under torch.autocast in bfloat16 (the backward pass follows the
    forward's dtypes). On this Xeon, oneDNN then runs the convolutions on AMX tiles: 2x per batch measured."""
    order = 2

    def __init__(self, enabled: bool = True):
        self.enabled, self.ctx = enabled, None

    def before_batch(self, learn):
        if self.enabled:
            self.ctx = torch.autocast(learn.dls.valid.device.type, dtype=torch.bfloat16)
            self.ctx.__enter__()

    def after_loss(self, learn):
        self.cleanup_batch(learn)

    def cleanup_batch(self, learn):
        if self.ctx is not None:
            self.ctx.__exit__(None, None, None)
            self.ctx = None


class TrainClock(Callback):
    """Training seconds per epoch (validation excluded) and the test accuracy after each epoch."""
    order = 70

    def before_fit(self, learn):
        self.checks, self.epoch_seconds = [], []

    def before_train(self, learn):
        self.start = time.perf_counter()

    def after_train(self, learn):
        self.epoch_seconds.append(time.perf_counter() - self.start)

    def after_epoch(self, learn):
        acc = learn.log["accuracy"]
        self.checks.append({"epoch": learn.epoch + 1, "seconds": sum(self.epoch_seconds), "accuracy": acc})
        print(f"  ours       epoch {learn.epoch + 1:5.2f}  {self.checks[-1]['seconds']:7.1f}s  {acc:.4f}", flush=True)


def run_ours(data, seed: int, epochs: int, lr: float, bs: int, bf16: bool) -> dict:
    torch.manual_seed(seed)
    dls = DataLoaders(DataLoader(data.train.images, data.train.labels, bs, shuffle=True, seed=seed, tfm=to_input),
                      DataLoader(data.valid.images, data.valid.labels, 2000, tfm=to_input))
    clock = TrainClock()
    opt = lambda params, lr: SGD(params, lr, mom=0.9, wd=5e-4, nesterov=True)  # noqa: E731
    learn = Learner(fastcnn(10), dls, cross_entropy, opt_func=opt, metrics=[accuracy], cbs=[clock, Bf16Autocast(bf16)])
    learn.fit_one_cycle(epochs, lr)
    n = len(dls.train)
    return summary("ours", clock.checks, clock.epoch_seconds, n, n)


def summary(name: str, checks: list[dict], epoch_seconds: list[float], n_batches: int, done: int) -> dict:
    """Time to TARGET (None if never reached) and seconds per epoch (the partial last epoch scaled up if needed)."""
    hit = next((c for c in checks if c["accuracy"] >= TARGET), None)
    per_epoch = epoch_seconds[0] if epoch_seconds else checks[-1]["seconds"] * n_batches / done
    return {"name": name, "time_to_target": hit["seconds"] if hit else None, "epoch_s": per_epoch,
            "final_accuracy": checks[-1]["accuracy"], "checks": checks, "reached": hit is not None}


def warm_up(data) -> None:
    """One untimed batch through each model: first calls pay for kernel selection and allocation."""
    x = to_input(data.train.images[:256])
    for m in (fastcnn(10), ReferenceNet()):
        m(x).sum().backward()


def time_to_99(runs: list[dict]) -> tuple[float | None, bool]:
    """(median time to 99.0% over runs, whether every run reached it); a run that did not counts its last check's
    seconds, so the median is then a lower bound."""
    if not runs:
        return None, False
    times = [r["time_to_target"] if r["reached"] else r["checks"][-1]["seconds"] for r in runs]
    return median(times), all(r["reached"] for r in runs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2, help="how many seeds of ours")
    ap.add_argument("--ref-seeds", type=int, default=2, help="how many runs of the reference (seeds from --seed)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2, help="our one-cycle schedule's length")
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--bs", type=int, default=128)
    ap.add_argument("--precisions", nargs="+", choices=["bf16", "fp32"], default=["bf16", "fp32"],
                    help="ours under bfloat16 autocast and/or in float32 (the reference is float32)")
    ap.add_argument("--ref-cap", type=float, default=180.0, help="stop the reference after this many seconds")
    ap.add_argument("--ref-stop-ratio", type=float, default=5.5, help="stop the reference once it has trained this "
                    "many times as long as our slowest fp32 seed (bf16 without fp32) took to 99.0% without "
                    "reaching it (0: only --ref-cap stops it)")
    ap.add_argument("--no-reference", action="store_true", help="time ours only")
    args = ap.parse_args(argv)
    torch.set_float32_matmul_precision("highest")
    data = load_task("digits")
    warm_up(data)
    ours = {p: [] for p in args.precisions}
    for s in range(args.seeds):  # interleaved, so both precisions see the same machine noise
        for prec in args.precisions:
            print(f"ours (fastcnn, {args.epochs} epochs one-cycle, lr {args.lr}, bs {args.bs}, {prec}), "
                  f"seed {args.seed + s}")
            ours[prec].append(run_ours(data, args.seed + s, args.epochs, args.lr, args.bs, prec == "bf16"))
    slowest = {p: max(o["time_to_target"] for o in runs) if all(o["reached"] for o in runs) else None
               for p, runs in ours.items()}
    refs = []
    if not args.no_reference:
        longest = slowest.get("fp32") or slowest.get("bf16")
        cap = min(args.ref_cap, args.ref_stop_ratio * longest) if longest and args.ref_stop_ratio > 0 else args.ref_cap
        for s in range(args.ref_seeds):
            print(f"reference (pytorch/examples mnist), seed {args.seed + s}, capped at {cap:.0f}s of training")
            refs.append(run_reference(data, args.seed + s, cap))
    row = {}
    ref_t, ref_all = time_to_99(refs)
    if refs:
        row.update(ref_time_to_99=ref_t if ref_all else None, ref_reached=ref_all,
                   ref_epoch_s=median([r["epoch_s"] for r in refs]))
    for prec, runs in ours.items():
        key = "ours" if prec == "bf16" else "ours_fp32"  # bf16 keeps the record's original names
        t, reached = time_to_99(runs)
        row.update({f"{key}_time_to_99": t if reached else None, f"{key}_slowest_time_to_99": slowest[prec],
                    f"{key}_epoch_s": median([o["epoch_s"] for o in runs]),
                    f"{key}_final_accuracy": [o["final_accuracy"] for o in runs]})
        if refs:
            ratio = "time_to_99_ratio" if prec == "bf16" else "fp32_time_to_99_ratio"
            row[f"{'epoch_ratio' if prec == 'bf16' else 'fp32_epoch_ratio'}"] = row["ref_epoch_s"] / row[f"{key}_epoch_s"]
            if reached and ref_all:
                row[ratio] = ref_t / t
            elif reached:  # the reference stopped at its cap first: the ratio is at least this
                row[f"{ratio}_at_least"] = ref_t / t
    fmt = lambda t: "not reached" if t is None else f"{t:.1f}s"  # noqa: E731
    for prec in ours:
        key = "ours" if prec == "bf16" else "ours_fp32"
        print(f"\n{prec}: per epoch {row[f'{key}_epoch_s']:.1f}s, time to 99.0% {fmt(row[f'{key}_time_to_99'])} "
              f"(median of {args.seeds}; slowest {fmt(slowest[prec])})")
    if refs:
        print(f"reference (fp32): per epoch {row['ref_epoch_s']:.1f}s, time to 99.0% "
              f"{fmt(ref_t) if ref_all else f'not reached after {ref_t:.0f}s (median)'}")
        for name, what in (("time_to_99_ratio", "bf16 vs fp32"), ("fp32_time_to_99_ratio", "fp32 vs fp32")):
            if name in row:
                print(f"ratio {what}: {row[name]:.1f}x sooner")
            elif f"{name}_at_least" in row:
                print(f"ratio {what}: at least {row[f'{name}_at_least']:.1f}x (the reference stopped first)")
    path = write_record("tendigits", {"claim": __doc__.split("\n\n")[1].replace("\n", " "), "args": vars(args),
                                      **row, "ours": ours.get("bf16", []), "ours_fp32": ours.get("fp32", []),
                                      "reference": refs[0] if refs else None, "references": refs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
