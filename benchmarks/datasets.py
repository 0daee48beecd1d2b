"""python -m benchmarks.datasets folders: 70,000 MNIST PNGs as class folders, against the IDX files.

(Fashion-MNIST's default recipe is measured by `python -m benchmarks.default_recipe --data
/usr/share/datasets/fashion-mnist`; results/fashion-mnist-default.json is the record of the recipe before it.)

`digitlab data export DIR --task digits` writes all 70,000 images as PNGs in class folders; loading them
the first time (decode) and the second time (the cached tensor file) is timed (bar: second < 1 s), and the task
built from the folders is compared with the one built from the IDX files: the same tensors, classes and
statistics, so the same recipe and seed train the same model (accuracy within 0.1 points: here, equal). With
--train, both are trained with the default recipe and their test accuracies compared. Writes
results/image-folders-mnist.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from digitlab.data.folders import export_dataset, load_image_folders
from digitlab.data.tasks import load_task

from .common import write_record

DIGITLAB = str(Path(sys.executable).with_name("digitlab"))


def train_json(data: str, runs: Path, name: str) -> tuple[dict, float]:
    """(summary, wall seconds) of `digitlab train --data DATA --seed 42 --json`, as a user runs it."""
    start = time.perf_counter()
    proc = subprocess.run([DIGITLAB, "train", "--data", data, "--seed", "42", "--runs", str(runs), "--name", name,
                           "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"digitlab train failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout), wall


def folders(train: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # a cold cache: the first load really decodes
        dest = Path(tmp) / "mnist_png"
        start = time.perf_counter()
        export_dataset(dest, "digits")
        export_s = time.perf_counter() - start
        loads = []
        for _ in range(2):
            start = time.perf_counter()
            fs = load_image_folders(dest)
            loads.append((time.perf_counter() - start, fs.cached))
        start = time.perf_counter()
        from_folders = load_task("digits", dest)
        task_s = time.perf_counter() - start
        from_idx = load_task("digits")
        same = all(torch.equal(getattr(getattr(from_folders, s), t), getattr(getattr(from_idx, s), t))
                   for s in ("train", "valid", "test") for t in ("images", "labels"))
        same = same and from_folders.classes == from_idx.classes and \
            (from_folders.mean, from_folders.std) == (from_idx.mean, from_idx.std)
        record = {"claim": "70,000 MNIST PNGs in class folders: a second run's data loading < 1 s; trains to within "
                           "0.1 points of the IDX files' accuracy with the same recipe and seed",
                  "images": sum(len(s) for s in fs.splits.values()), "export_s": export_s,
                  "first_load_s": loads[0][0], "first_load_cached": loads[0][1],
                  "second_load_s": loads[1][0], "second_load_cached": loads[1][1],
                  "second_run_task_s": task_s, "same_tensors_classes_and_statistics_as_idx": same}
        if train:
            with tempfile.TemporaryDirectory() as runs:
                idx, _ = train_json(str(Path(__file__).resolve().parent.parent / "src/digitlab/datasets/mnist"),
                                    Path(runs), "idx")
                png, _ = train_json(str(dest), Path(runs), "png")
            record.update(idx_test_accuracy=idx["test_accuracy"], folders_test_accuracy=png["test_accuracy"],
                          difference_points=100 * abs(idx["test_accuracy"] - png["test_accuracy"]))
    record["passed"] = record["second_load_s"] < 1.0 and same and record.get("difference_points", 0) <= 0.1
    print(json.dumps(record, indent=2))
    print(write_record("image-folders-mnist", record))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", choices=["folders"])
    ap.add_argument("--train", action="store_true", help="also train on both (about 10 minutes)")
    args = ap.parse_args(argv)
    folders(args.train)


if __name__ == "__main__":
    main()
