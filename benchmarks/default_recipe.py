"""python -m benchmarks.default_recipe [--data DIR] [--seeds 42,0,1,2,3] [--as-avx2]: plain `digitlab train`, as a user runs it.

Each seed is a fresh `digitlab train --seed S --json` process (the data set's default recipe, data.catalogue), its
summary read back: validation accuracy (what chose the recipe), test accuracy (scored once, at the end), the
calibration figures and the training time. The bars (issue 18 for MNIST, issue 17 for Fashion-MNIST) are checked
against what ran here:
- MNIST: every seed at least 99.5% test accuracy, the mean at least 99.55%, each under 5 minutes of training;
- Fashion-MNIST (/usr/share/datasets/fashion-mnist): at least 93.0% test accuracy in under 5 minutes, every seed.
`--as-avx2` runs every seed in a process told ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, so PyTorch and
oneDNN dispatch as on an AVX2-only CPU (no AVX-512, no bf16 units: `auto` trains in fp32 and the recipe takes its
fp32_cpu changes). Writes results/default-recipe-<data set>[-avx2].json, with the machine class each run reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from digitlab.data.catalogue import known_set_at
from digitlab.hardware import machine_class

from .common import write_record
from .precision import AVX2_ENV

DIGITLAB = str(Path(sys.executable).with_name("digitlab"))
BARS = {"MNIST": {"each_test": 0.995, "mean_test": 0.9955, "seconds": 300.0},
        "Fashion-MNIST": {"each_test": 0.930, "mean_test": 0.930, "seconds": 300.0}}


def train_json(data: str | None, seed: int, runs: Path, env: dict | None = None) -> tuple[dict, float]:
    """(summary, wall seconds) of `digitlab train [--data DATA] --seed SEED --json` in a fresh process."""
    cmd = [DIGITLAB, "train", "--seed", str(seed), "--runs", str(runs), "--name", f"seed{seed}", "--json"]
    cmd += ["--data", data] if data else []
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout), wall


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="an IDX folder (default: the shipped MNIST)")
    ap.add_argument("--seeds", default="42,0,1,2,3")
    ap.add_argument("--as-avx2", action="store_true", help="dispatch as on an AVX2-only CPU (see above)")
    args = ap.parse_args(argv)
    known = known_set_at(args.data)
    name = known.name if known else "unknown"
    bars = BARS.get(name)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs, config = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            s, wall = train_json(args.data, seed, Path(tmp), AVX2_ENV if args.as_avx2 else None)
            config = config or json.loads(Path(s["run"], "config.json").read_text())["config"]
            runs.append({"seed": seed, "valid_accuracy": s["valid_accuracy"], "test_accuracy": s["test_accuracy"],
                         "test_errors": s["test_errors"], "train_seconds": round(s["train_seconds"], 1),
                         "wall_seconds": round(wall, 1), "ece": s.get("ece"), "ece_calibrated": s.get("ece_calibrated"),
                         "nll": s.get("nll"), "nll_calibrated": s.get("nll_calibrated"),
                         "temperature": s.get("temperature"), "precision": s.get("precision"),
                         "machine_class": machine_class(s["machine"])})
            print(json.dumps(runs[-1]), flush=True)
    tests = [r["test_accuracy"] for r in runs]
    record = {"command": f"digitlab train{' --data ' + args.data if args.data else ''} --seed S --json",
              "data_set": name, "config": config, "runs": runs,
              "mean_test": statistics.mean(tests), "min_test": min(tests),
              "mean_valid": statistics.mean(r["valid_accuracy"] for r in runs),
              "max_train_seconds": max(r["train_seconds"] for r in runs),
              "median_train_seconds": statistics.median(r["train_seconds"] for r in runs),
              "bars": bars, "hardware": "2 CPU cores, torch CPU build, each seed alone under a CPU lock",
              "machine_class": runs[-1]["machine_class"], "dispatch_forced": AVX2_ENV if args.as_avx2 else None}
    if bars:
        record["passed"] = (min(tests) >= bars["each_test"] and record["mean_test"] >= bars["mean_test"]
                            and record["max_train_seconds"] < bars["seconds"])
    print(json.dumps({k: v for k, v in record.items() if k not in ("config", "runs")}, indent=2))
    print(write_record(f"default-recipe-{name.lower()}{'-avx2' if args.as_avx2 else ''}", record))


if __name__ == "__main__":
    main()
