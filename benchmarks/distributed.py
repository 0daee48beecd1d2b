"""Throughput of data-parallel training: the same run on 1 process and on N processes (torchrun, gloo or nccl).

Each configuration trains the same model on the same data with the same global batch through the real
`digitlab train` command and reports training images per second (from the run's summary, so process start-up
is excluded). Run: python -m benchmarks.distributed [--nproc 2] [--model cnn] [--task 3v7] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import median, write_record


def one_run(nproc: int, args, root: Path, i: int) -> dict:
    name = f"p{nproc}-{i}"
    cmd = [sys.executable, "-m", "digitlab", "train", "--task", args.task, "--model", args.model, "--epochs",
           str(args.epochs), "--bs", str(args.bs), "--lr", "0.01", "--no-augment", "--runs", str(root), "--name",
           name, "-q", "--device", args.device]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    subprocess.run(cmd, check=True, capture_output=True)
    summary = json.loads((root / name / "summary.json").read_text())
    n_train = {"3v7": 12396, "digits": 60000}[args.task] * args.epochs
    return {"seconds": summary["train_seconds"], "images_per_s": n_train / summary["train_seconds"],
            "accuracy": summary["accuracy"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--task", default="3v7")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--bs", type=int, default=128)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in (1, args.nproc):
            runs = [one_run(nproc, args, Path(tmp), i) for i in range(args.repeats)]
            row = {"nproc": nproc, "images_per_s": median([r["images_per_s"] for r in runs]),
                   "seconds": median([r["seconds"] for r in runs]), "accuracy": median([r["accuracy"] for r in runs]),
                   "runs": runs}
            rows.append(row)
            print(f"{nproc} process(es): {row['images_per_s']:.0f} images/s, {row['seconds']:.2f} s per run, "
                  f"accuracy {row['accuracy']:.4f}")
    print(f"ratio {args.nproc} vs 1: {rows[1]['images_per_s'] / rows[0]['images_per_s']:.2f}x")
    path = write_record(f"distributed-{args.device}", {
        "claim": "data-parallel throughput, same global batch, medians of repeats", "args": vars(args), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
