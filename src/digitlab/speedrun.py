"""Speedruns: train ten digits to a test-accuracy target as fast as possible, over several seeds, and say how fast.

Each target has a recipe per kind of device (a TrainConfig on the fast engine), sized so that its final evaluation
reaches the target on every seed measured; the measurements behind each choice are in benchmarks/NOTES.md
("Speedrun recipes") and benchmarks/results/. The clock runs from the first training step to the final evaluation
on the 10000 test images, device synchronised; data loading, start-up and an untimed one-epoch warm-up run (which
settles oneDNN's kernels on a CPU, the CUDA graph on a GPU) are excluded, as in airbench. A seed that ends below the target counts as a miss, and the summary says so.
"""

from __future__ import annotations

import statistics

from .config import TrainConfig
from .errors import ConfigError
from .train.fast import fast_fit
from .hardware import auto_precision
from .train.runtime import resolve_device


def fast(**fields) -> TrainConfig:
    """A speedrun recipe: the fast engine on all 60000 training images (no validation split: the recipes were
    fixed beforehand), scored once on the test set."""
    return TrainConfig(engine="fast", valid_size=0, **fields)


RECIPES: dict[str, dict[float, TrainConfig]] = {
    "cpu": {0.99: fast(epochs=2, augment=False, bs=128, lr=0.1), 0.995: fast(epochs=10, tta=True),
            0.997: fast(model="fastcnn_deep", epochs=15)},
    # a CPU that trains in fp32 (no bf16 units, digitlab.hardware): fastcnn's step there is 2x a bf16 CPU's
    # (results/precision-avx2.json), too slow for 2 epochs in 45 s. A narrower fastcnn for 2 epochs, its lr chosen
    # on a 10000-image validation split (0.1 / 0.15 / 0.2: mean 98.66 / 98.79 / 98.89% there, 3 seeds, AVX2
    # dispatch), then scored once on test: results/speedrun-cpu-0.99-avx2.json. Other targets keep the bf16 recipes.
    "cpu-fp32": {0.99: fast(model="fastcnn_small", epochs=2, augment=False, bs=128, lr=0.2)},
    "cuda": {0.99: fast(epochs=3, augment=False, compile=True), 0.995: fast(epochs=8, compile=True, tta=True),
             0.997: fast(model="fastcnn_deep", epochs=17, compile=True)},
}
TARGETS = tuple(RECIPES["cpu"])


def recipe_for(target: float, device_type: str, precision: str = "bf16") -> TrainConfig:
    """The target's recipe for a kind of device; a CPU that trains in fp32 (`precision`) has its own where
    measured."""
    recipes = RECIPES["cuda" if device_type == "cuda" else "cpu"]
    if target not in recipes:
        raise ConfigError(f"no speedrun recipe for target {target}; choose one of {', '.join(map(str, recipes))}.")
    if device_type != "cuda" and precision == "fp32":
        return RECIPES["cpu-fp32"].get(target, recipes[target])
    return recipes[target]


def speedrun(target: float = 0.99, seeds: tuple[int, ...] = (0, 1, 2), device: str = "auto", data=None) -> dict:
    """Run the target's recipe once per seed; mean and minimum over seeds, and every run."""
    dev = resolve_device(device)
    cfg = recipe_for(target, dev.type, auto_precision(dev).name)
    _, results = fast_fit(cfg, tuple(seeds), data, str(dev), warmup=True)
    runs = [{"seed": r.seed, "reached": r.accuracy >= target, "seconds": r.seconds, "accuracy": r.accuracy,
             "epochs": r.epochs} for r in results]
    times = [r["seconds"] for r in runs]
    return {"target": target, "device": str(dev), "recipe": cfg.to_dict(), "all_reached": all(r["reached"] for r in runs),
            "mean_seconds": statistics.mean(times), "min_seconds": min(times),
            "mean_accuracy": statistics.mean(r["accuracy"] for r in runs), "runs": runs}
