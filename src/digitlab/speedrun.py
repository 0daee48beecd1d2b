"""Speedruns: train to a test-accuracy target as fast as possible, over several seeds, and say how fast.

Each target has a recipe sized to reach it (a one-cycle schedule that ends when the target should be reached);
the clock runs from the first training step to the evaluation that first reaches the target (validation after
every epoch is the evaluation on the 10000 test images), so data loading and start-up are excluded, as in
airbench. A seed that never reaches the target counts as a miss, and the summary says so.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from .config import TrainConfig
from .errors import ConfigError
from .train.learner import Callback, CancelFitException

# target -> TrainConfig fields; the rest are TrainConfig's defaults (fastcnn, one-cycle SGD, label smoothing)
TARGETS: dict[float, dict] = {
    0.99: dict(epochs=2, augment=False, lr=0.2, bs=256),
    0.995: dict(epochs=10),                       # the default recipe
    0.997: dict(model="fastcnn_wide", epochs=15),  # the "best" recipe
}


class StopAtTarget(Callback):
    """Records when validation accuracy first reaches `target` and ends the fit there."""
    order = 80

    def __init__(self, target: float):
        self.target, self.reached_at, self.accuracy = target, None, None

    def before_fit(self, learn):
        self.start = time.perf_counter()

    def after_epoch(self, learn):
        self.accuracy = learn.log.get("accuracy")
        if self.accuracy is not None and self.accuracy >= self.target:
            self.reached_at = time.perf_counter() - self.start
            raise CancelFitException()


@dataclass
class SpeedrunResult:
    seed: int
    reached: bool
    seconds: float        # to the target, or the whole run when it was missed
    accuracy: float       # test accuracy at that point
    epochs: int


def speedrun(target: float = 0.99, seeds: tuple[int, ...] = (0, 1, 2), device: str = "auto", data=None) -> dict:
    """Run the target's recipe once per seed; mean and minimum over seeds, and every run."""
    from .data.tasks import load_task
    from .train.trainer import fit

    if target not in TARGETS:
        raise ConfigError(f"no speedrun recipe for target {target}; choose one of {', '.join(map(str, TARGETS))}.")
    data = data or load_task("digits")
    runs = []
    for seed in seeds:
        stop = StopAtTarget(target)
        result = fit(TrainConfig(**TARGETS[target], seed=seed, device=device), cbs=[stop], data=data)
        reached = stop.reached_at is not None
        runs.append(SpeedrunResult(seed, reached, stop.reached_at if reached else result.summary["train_seconds"],
                                   stop.accuracy, result.summary["epochs_done"]))
    times = [r.seconds for r in runs]
    return {"target": target, "recipe": TARGETS[target], "all_reached": all(r.reached for r in runs),
            "mean_seconds": statistics.mean(times), "min_seconds": min(times),
            "mean_accuracy": statistics.mean(r.accuracy for r in runs), "runs": [r.__dict__ for r in runs]}
