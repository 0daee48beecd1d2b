"""python -m benchmarks.gpu_first_runs: why the first full runs after the warm-up are slow in a fresh process.

`digitlab speedrun --device cuda` (a fresh process: compile, one-epoch warm-up run, then one run per seed) took
2.1 s for its first three 99.5% runs and 0.77 s for the fifth; in `benchmarks.gpu`, where the trainer has run
before, every run took 0.79 s. This repeats the command's sequence with one trainer and prints, per run: the
time, how long the host took to queue the epochs (a host that waits for the GPU queues slowly), the allocator's
device and pinned-host allocations, and the GPU's clock after the run.
"""

from __future__ import annotations

import argparse
import subprocess
import time

import torch

from digitlab.data.tasks import load_task
from digitlab.config import TrainConfig
from digitlab.train.fast import FastTrainer

STATS = ("num_device_alloc", "num_device_free", "num_alloc_retries", "num_sync_all_streams")


def gpu_clock() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def stats(cuda: bool) -> tuple[dict, dict]:
    return (torch.cuda.memory_stats(), torch.cuda.host_memory_stats()) if cuda else ({}, {})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fastcnn")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--no-aug", action="store_true")
    ap.add_argument("--warmup-epochs", type=int, default=1)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--device", default="cuda", help="cpu: check the script itself")
    args = ap.parse_args(argv)
    cfg = TrainConfig(engine="fast", model=args.model, epochs=args.epochs, compile=args.compile, tta=args.tta, augment=not args.no_aug)
    start = time.perf_counter()
    tr = FastTrainer(cfg, load_task("digits"), args.device)
    cuda = tr.cuda
    tr.run(0, epochs=args.warmup_epochs)
    print(f"{cfg}\nbuilt and warmed up in {time.perf_counter() - start:.1f}s; clock {gpu_clock()}", flush=True)
    queued = {}
    for name in ("accuracy", "tta_accuracy"):  # the end of the queued epochs: the final evaluation begins
        original = getattr(tr, name)

        def stamped(original=original):
            queued["at"] = time.perf_counter()
            return original()
        setattr(tr, name, stamped)
    for i in range(args.runs):
        dev0, host0 = stats(cuda)
        t0 = time.perf_counter()
        r = tr.run(i)
        dev1, host1 = stats(cuda)
        deltas = {k: dev1.get(k, 0) - dev0.get(k, 0) for k in STATS}
        deltas["num_host_alloc"] = host1.get("num_host_alloc", 0) - host0.get("num_host_alloc", 0)
        print(f"run {i}: {r.seconds:.3f}s acc {r.accuracy:.4f}; epochs queued after {queued['at'] - t0:.3f}s; "
              f"{deltas}; clock {gpu_clock()}", flush=True)


if __name__ == "__main__":
    main()
