"""python -m benchmarks.gpu_validation: recipes chosen on the validation split, on a GPU, in one short run.

Every run here holds out the fixed, stratified 5,000-image validation split (digitlab.data.tasks) and records both
its validation accuracy (what a choice may read) and its test accuracy (scored once at the end, reported, never
used to choose). Sections, each guarded and budgeted, the JSON rewritten after each:
1. tests: tests/test_fast.py and tests/test_augment.py under pytest on the GPU (benchmarks.gpu's section);
2. default_candidates: CPU-sized recipes for the default (fast engine, fastcnn; what 2 CPU cores can train in
   under 5 minutes), seeds 42 and 0-3 each: the GPU picks which to confirm on the CPU, where the bar is measured;
3. fashion_candidates: the same for Fashion-MNIST (left-right flips, no rotation), seeds 42, 0 and 1, when its
   IDX files are found (`--fashion DIR`); fashion_round2 (only with `--only fashion_round2`), the second round;
4. gpu_recipes: best, best-m5 and best-strong re-run with the split, seeds 0-2: each member's validation and test
   probabilities are kept (`--probs`), so ensembles can be chosen on validation without a GPU.

`--only` picks sections; `--rescore PROBS` scores the kept members' ensembles on a CPU, training nothing.
`--dry-run` runs every section on the CPU with one-epoch recipes on a slice of the data, to check the script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from digitlab.config import TrainConfig
from digitlab.data.mnist import Split
from digitlab.data.tasks import TaskData, load_task
from digitlab.recipes import RECIPES

from . import gpu
from .common import RESULTS

VALID_SIZE = 5000


def fast(**fields) -> TrainConfig:
    return TrainConfig(engine="fast", valid_size=VALID_SIZE, **fields)


def default_candidates() -> list[TrainConfig]:
    """Each fits 2 CPU cores' 5 minutes with room (fastcnn: about 7-13 s a fast-engine epoch there; fastcnn_wide
    about 3.2x that)."""
    return [fast(epochs=10, tta=True), fast(epochs=15, tta=True), fast(epochs=20, tta=True), fast(epochs=20),
            fast(epochs=25, tta=True), fast(model="fastcnn_wide", epochs=8, tta=True)]


def fashion_candidates() -> list[TrainConfig]:
    """Clothes keep their class mirrored and are photographed upright: flips, no rotation."""
    clothes = dict(aug_flip=True, aug_degrees=0.0)
    return [fast(epochs=20, **clothes), fast(epochs=20, tta=True, **clothes), fast(epochs=25, tta=True, **clothes),
            fast(epochs=20, tta=True, aug_flip=True, aug_degrees=5.0, aug_shift=1.0, aug_scale=0.05),
            fast(model="fastcnn_wide", epochs=8, tta=True, **clothes), fast(epochs=20, tta=True)]


def fashion_round2() -> list[TrainConfig]:
    """After round 1 (best: 20 epochs, milder augmentation, 92.94% test, valid 93.33%): longer, and TTA over
    mirror images too (inference.class_probs with aug_flip)."""
    mild = dict(aug_flip=True, aug_degrees=5.0, aug_shift=1.0, aug_scale=0.05, tta=True)
    return [fast(epochs=25, **mild), fast(epochs=30, **mild), fast(epochs=30, aug_flip=True, aug_degrees=0.0, tta=True),
            fast(epochs=30, aug_flip=True, aug_degrees=0.0, aug_scale=0.0, tta=True)]


def describe(cfg: TrainConfig) -> str:
    base = TrainConfig()
    changed = {k: v for k, v in cfg.to_dict().items()
               if v != getattr(base, k) and k not in ("engine", "valid_size", "seed", "device", "data")}
    return ", ".join(f"{k}={v}" for k, v in changed.items())


def sweep(b: gpu.Bench, configs: list[TrainConfig], seeds: list[int], stop: float, keep: str | None = None) -> dict:
    """Each config over the seeds (each trainer warmed up first); valid and test accuracy of every run."""
    rows = []
    for cfg in configs:
        if time.monotonic() > stop:
            rows.append({"recipe": describe(cfg), "skipped": "out of budget"})
            continue
        try:
            tr = b.trainer(cfg)
        except Exception as e:  # a compile that fails here still leaves the recipe to measure uncompiled
            if not cfg.compile:
                raise
            print(f"{describe(cfg)}: compiled trainer failed ({type(e).__name__}: {e}); uncompiled instead", flush=True)
            b.record.setdefault("errors", []).append(f"{describe(cfg)}: {type(e).__name__}: {e}")
            cfg = cfg.replace(compile=False)
            tr = b.trainer(cfg)
        runs = []
        for seed in seeds:
            r = tr.run(seed)
            runs.append({"seed": seed, "valid_accuracy": r.summary["valid_accuracy"],
                         "test_accuracy": r.summary["test_accuracy"], "seconds": round(r.seconds, 2)})
            if keep is not None:
                b.keep_probs(f"{keep}/{describe(cfg)}/seed{seed}/valid", tr.probs(tr.data.valid, cfg.tta))
                b.keep_probs(f"{keep}/{describe(cfg)}/seed{seed}/test", r.probs)
            if time.monotonic() > stop:
                break
        row = {"recipe": describe(cfg), "config": cfg.to_dict(), "runs": runs,
               "epoch_seconds": round(b.epoch_seconds[b.key(cfg)], 3),
               "mean_valid": statistics.mean(x["valid_accuracy"] for x in runs),
               "mean_test": statistics.mean(x["test_accuracy"] for x in runs),
               "min_test": min(x["test_accuracy"] for x in runs)}
        print(f"{row['recipe']}: valid mean {row['mean_valid']:.4f}, test mean {row['mean_test']:.4f} "
              f"(min {row['min_test']:.4f}) over {len(runs)} seeds", flush=True)
        rows.append(row)
        b.save()
    done = [r for r in rows if "runs" in r]
    chosen = max(done, key=lambda r: r["mean_valid"]) if done else None
    return {"seeds": seeds, "valid_size": VALID_SIZE, "rows": rows,
            "chosen_on_valid": chosen and chosen["recipe"], "chosen_test_mean": chosen and chosen["mean_test"]}


def rescore(probs_file: Path, out: Path) -> dict:
    """Ensembles of the gpu_recipes members from their kept probabilities, on the CPU: each recipe's members
    together and all of them together; the one with the best validation accuracy is the one chosen, and its test
    accuracy is what is reported. Writes `out`."""
    kept = torch.load(probs_file)
    data = load_task("digits", None, VALID_SIZE)
    members = sorted({k.rsplit("/", 1)[0] for k in kept})
    groups = {recipe: [m for m in members if m.split("/")[1] == recipe] for recipe in {m.split("/")[1] for m in members}}
    groups["all"] = members

    def accuracy(names, split, labels):
        votes = sum(kept[f"{n}/{split}"].float() for n in names)
        return (votes.argmax(1) == labels).float().mean().item()

    rows = [{"ensemble": name, "members": len(names), "valid_accuracy": accuracy(names, "valid", data.valid.labels),
             "test_accuracy": accuracy(names, "test", data.test.labels)} for name, names in groups.items()]
    chosen = max(rows, key=lambda r: (r["valid_accuracy"], r["members"]))
    record = {"source": str(probs_file), "rows": rows, "chosen_on_valid": chosen["ensemble"],
              "chosen_test_accuracy": chosen["test_accuracy"]}
    out.write_text(json.dumps(record, indent=2))
    return record


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=500.0)
    ap.add_argument("--fashion", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--probs", type=Path, default=None, help="keep every gpu_recipes member's validation and test "
                    "probabilities here (torch.save)")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--only", default="tests,default_candidates,fashion_candidates,gpu_recipes",
                    help="the sections to run, comma-separated (fashion_round2 runs only when named)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--rescore", type=Path, default=None, help="no training: score ensembles of the members kept in "
                    "this --probs file (CPU), writing results/gpu-validation-ensembles.json")
    args = ap.parse_args(argv)
    if args.rescore:
        print(json.dumps(rescore(args.rescore, args.out or RESULTS / "gpu-validation-ensembles.json"), indent=2))
        return
    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    digits = load_task("digits", None, VALID_SIZE)
    fashion = load_task("digits", str(args.fashion), VALID_SIZE) if (args.fashion / "t10k-labels-idx1-ubyte.gz").exists() else None
    defaults, clothes, seeds, seeds_short, recipe_seeds = default_candidates(), fashion_candidates(), [42, 0, 1, 2, 3], [42, 0, 1], [0, 1, 2]
    gpu_recipes = [RECIPES[n].train_config().replace(valid_size=VALID_SIZE) for n in ("best", "best-m5", "best-strong")]
    if args.dry_run:
        def small(d):
            return d and TaskData(Split(d.train.images[:2000], d.train.labels[:2000]), d.valid,
                                  d.classes, test=Split(d.test.images[:1000], d.test.labels[:1000]))
        digits, fashion = small(digits), small(fashion)
        defaults = [c.replace(epochs=1) for c in defaults[:2]]
        gpu_recipes = [c.replace(epochs=1, compile=False) for c in gpu_recipes[:2]]
        seeds, seeds_short, recipe_seeds = [42, 0], [42], [0]
    name = gpu.device_info(device)["name"].lower().replace(" ", "-")
    out = args.out or RESULTS / f"gpu-validation-{name}.json"
    b = gpu.Bench(device, digits, args.budget, out, args.dry_run, probs_out=args.probs)
    only = set(args.only.split(","))
    if not args.dry_run and "tests" in only:
        b.section("tests", lambda stop: gpu.tests_section(b, stop), 90)
    if "default_candidates" in only:
        b.section("default_candidates", lambda stop: sweep(b, defaults, seeds, stop), 110)
    for section, configs in (("fashion_candidates", clothes), ("fashion_round2", fashion_round2())):
        if section not in only:
            continue
        if fashion is None:
            b.record["sections"][section] = {"error": f"no Fashion-MNIST IDX files in {args.fashion}"}
            continue
        bf = gpu.Bench(device, fashion, b.left(), out, args.dry_run)
        bf.record = b.record  # one record, one file
        configs = [c.replace(epochs=1) for c in configs[:2]] if args.dry_run else configs
        b.section(section, lambda stop, bf=bf, configs=configs: sweep(bf, configs, seeds_short, stop), 110)
    if "gpu_recipes" in only:
        b.section("gpu_recipes", lambda stop: sweep(b, gpu_recipes, recipe_seeds, stop, keep="digits"), b.left())
    b.save()
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
