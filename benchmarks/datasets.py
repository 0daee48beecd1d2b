"""python -m benchmarks.datasets: the bars of data sets beyond MNIST's IDX files.

    python -m benchmarks.datasets fashion [--from-run RUN]   # plain `digitlab train --data FASHION --seed 42`
    python -m benchmarks.datasets folders                    # 70,000 MNIST PNGs as class folders

fashion: the default recipe on Debian's Fashion-MNIST (/usr/share/datasets/fashion-mnist) reaches >= 93.0% test
accuracy in < 5 minutes of training on 2 CPU cores. Runs the user's command as a fresh process (or records a run
folder that command already made, --from-run). Writes results/fashion-mnist-default.json.

folders: `digitlab data export DIR --task digits` writes all 70,000 images as PNGs in class folders; loading them
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

FASHION = "/usr/share/datasets/fashion-mnist"
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


def fashion(from_run: str | None) -> None:
    if from_run:
        summary, wall = json.loads(Path(from_run, "summary.json").read_text()), None
        config = json.loads(Path(from_run, "config.json").read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            summary, wall = train_json(FASHION, Path(tmp), "fashion")
            config = json.loads(Path(summary["run"], "config.json").read_text())
    record = {"claim": "plain `digitlab train --data /usr/share/datasets/fashion-mnist --seed 42` (the default "
                       "recipe): >= 93.0% test accuracy in < 5 minutes of training on 2 CPU cores",
              "command": f"digitlab train --data {FASHION} --seed 42",
              "dataset": config.get("dataset"), "config": config["config"],
              "test_accuracy": summary.get("test_accuracy"), "valid_accuracy": summary.get("valid_accuracy"),
              "n_test": summary.get("n_test"), "train_seconds": summary["train_seconds"], "wall_seconds": wall,
              "classes": summary["classes"],
              "passed": (summary.get("test_accuracy") or 0) >= 0.930 and summary["train_seconds"] < 300}
    print(json.dumps({k: v for k, v in record.items() if k not in ("config", "dataset")}, indent=2))
    print(write_record("fashion-mnist-default", record))


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
    ap.add_argument("which", choices=["fashion", "folders"])
    ap.add_argument("--from-run", help="fashion: record this run folder of the same command instead of training")
    ap.add_argument("--train", action="store_true", help="folders: also train on both (about 10 minutes)")
    args = ap.parse_args(argv)
    fashion(args.from_run) if args.which == "fashion" else folders(args.train)


if __name__ == "__main__":
    main()
