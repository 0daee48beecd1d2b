"""The chapter's last stage in fastai itself: vision_learner(resnet18, pretrained=False) + fit_one_cycle(1, 0.1)
on the 3s and 7s, one run per seed, each seed's epoch time and accuracy written to results/fastai-resnet18.json.

Runs in the peers' own environment (benchmarks/peers/setup.sh), never beside digitlab; `python -m
benchmarks.peers` exports the image folders and calls this. The code is the book's (fastbook 04_mnist_basics):

    dls = ImageDataLoaders.from_folder(path)
    learn = vision_learner(dls, resnet18, pretrained=False, loss_func=F.cross_entropy, metrics=accuracy)
    learn.fit_one_cycle(1, 0.1)

with `path` the folders `digitlab data export DIR` writes (train/3, train/7, valid/3, valid/7: the book's
MNIST_SAMPLE), torch on the given number of threads, and fastai's set_seed(seed) before the DataLoaders are built.
The clock is fit_one_cycle's (training + validation, as ours); the DataLoaders keep fastai's default workers.
Run: benchmarks/peers/.venv/bin/python benchmarks/peers/fastai_resnet.py DIR [--seeds 42 1 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import fastai
import torch
import torch.nn.functional as F
import torchvision
from fastai.callback.training import ShortEpochCallback
from fastai.vision.all import ImageDataLoaders, accuracy, resnet18, set_seed, vision_learner

RESULTS = Path(__file__).resolve().parent.parent / "results"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def one_seed(path: Path, seed: int, warm_up: bool = False) -> dict:
    """The book's three lines for one seed: (epoch seconds, accuracy)."""
    set_seed(seed, reproducible=True)
    dls = ImageDataLoaders.from_folder(path)
    learn = vision_learner(dls, resnet18, pretrained=False, loss_func=F.cross_entropy, metrics=accuracy)
    if warm_up:  # 2% of an epoch, not counted: oneDNN builds its kernels at each shape's first use, as ours warms up
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 1e-3, cbs=ShortEpochCallback(pct=0.02))
        return {}
    with learn.no_bar():
        start = time.perf_counter()
        learn.fit_one_cycle(1, 0.1)
        seconds = time.perf_counter() - start
    valid_loss, acc = learn.recorder.values[-1][1:3]
    return {"seed": seed, "accuracy": round(float(acc), 6), "epoch_s": seconds, "valid_loss": float(valid_loss),
            "train_batches": len(dls.train), "valid_images": len(dls.valid_ds), "num_workers": dls.train.num_workers}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder with train/3, train/7, valid/3, valid/7 (digitlab data export)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "fastai-resnet18.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    one_seed(args.data, 0, warm_up=True)
    runs = []
    for seed in args.seeds:
        runs.append(one_seed(args.data, seed))
        print(f"seed {seed:3d}: accuracy {runs[-1]['accuracy']:.4f}, epoch {runs[-1]['epoch_s']:.1f} s", flush=True)
        rec = write(runs, args)  # after every seed, so an interrupted run keeps what it measured
    print(f"mean accuracy {rec['mean_accuracy']:.4f} (sd {rec['sd_accuracy']:.4f}), median epoch "
          f"{rec['median_epoch_s']:.1f} s; wrote {args.out}")


def write(runs: list[dict], args) -> dict:
    """The record of the runs so far: each seed, and the mean, spread and median epoch."""
    accs, times = [r["accuracy"] for r in runs], [r["epoch_s"] for r in runs]
    record = {
        "claim": "fastai's own chapter-4 last stage: vision_learner(resnet18, pretrained=False) + "
                 "fit_one_cycle(1, 0.1) on 3 vs 7, per seed",
        "code": "ImageDataLoaders.from_folder(path); vision_learner(dls, resnet18, pretrained=False, "
                "loss_func=F.cross_entropy, metrics=accuracy); fit_one_cycle(1, 0.1)",
        "runs": runs, "seeds": [r["seed"] for r in runs],
        "mean_accuracy": statistics.mean(accs), "sd_accuracy": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "min_accuracy": min(accs), "max_accuracy": max(accs),
        "median_epoch_s": statistics.median(times), "min_epoch_s": min(times), "max_epoch_s": max(times),
        "environment": {"fastai": fastai.__version__, "torch": torch.__version__,
                        "torchvision": torchvision.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads(), "cpu": cpu_name(), "cores": os.cpu_count(),
                        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # AVX2, AVX512, ...
                        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                        "when": time.strftime("%Y-%m-%d %H:%M:%S")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
