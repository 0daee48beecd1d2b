"""Speedruns: train ten digits to a test-accuracy target as fast as possible, over several seeds, and say how fast.

Each target has a recipe per kind of device (`speedrun-*` in recipes.RECIPES, on the fast engine), sized so that
its final evaluation reaches the target on every seed measured; the measurements behind each choice are in
benchmarks/NOTES.md ("Speedrun recipes") and benchmarks/results/. The clock runs from the first training step to
the final evaluation on the 10000 test images, device synchronised; data loading, start-up and an untimed
one-epoch warm-up run (which settles oneDNN's kernels on a CPU, the CUDA graph on a GPU) are excluded, as in
airbench. A seed that ends below the target counts as a miss, and the summary says so.
"""

from __future__ import annotations

import statistics

from .config import TrainConfig
from .errors import ConfigError
from .recipes import RECIPES
from .hardware import auto_precision
from .train.fast import fast_fit
from .train.runtime import resolve_device

TARGETS = (0.99, 0.995, 0.997)


def recipe_for(target: float, device_type: str, precision: str = "bf16") -> TrainConfig:
    """The target's recipe for a kind of device (recipes.RECIPES, speedrun-T-cpu or speedrun-T-cuda); a CPU that
    trains in fp32 (`precision`) takes speedrun-T-cpu-fp32 where one was measured."""
    if target not in TARGETS:
        raise ConfigError(f"no speedrun recipe for target {target}; choose one of {', '.join(map(str, TARGETS))}.")
    name = f"speedrun-{target}-{'cuda' if device_type == 'cuda' else 'cpu'}"
    if device_type != "cuda" and precision == "fp32" and f"{name}-fp32" in RECIPES:
        name += "-fp32"
    return RECIPES[name].train_config()


def speedrun(target: float = 0.99, seeds: tuple[int, ...] = (0, 1, 2), device: str = "auto", data=None,
             warmup: bool = True) -> dict:
    """Run the target's recipe once per seed (after the untimed warm-up run, unless `warmup` is False: a check
    of the accuracy alone); mean and minimum over seeds, and every run."""
    dev = resolve_device(device)
    cfg = recipe_for(target, dev.type, auto_precision(dev).name)
    _, results = fast_fit(cfg, tuple(seeds), data, str(dev), warmup=warmup)
    runs = [{"seed": r.seed, "reached": r.accuracy >= target, "seconds": r.seconds, "accuracy": r.accuracy,
             "epochs": r.epochs} for r in results]
    times = [r["seconds"] for r in runs]
    return {"target": target, "device": str(dev), "recipe": cfg.to_dict(), "all_reached": all(r["reached"] for r in runs),
            "mean_seconds": statistics.mean(times), "min_seconds": min(times),
            "mean_accuracy": statistics.mean(r["accuracy"] for r in runs), "runs": runs}
