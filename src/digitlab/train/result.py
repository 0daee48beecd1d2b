"""What a training run returns, whichever engine ran it: the model, its history and its final scores."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import TrainConfig
from ..data.tasks import TaskData
from ..models.layers import n_params


@dataclass
class TrainResult:
    config: TrainConfig                 # the config that ran (its seed and epochs are this run's)
    model: torch.nn.Module
    summary: dict                       # final scores and facts of the run (summary.json); see `summarize`
    history: list[dict]                 # one log per epoch: epoch, train_loss, and what the engine measured
    batch_losses: list[float] = field(default_factory=list, repr=False)  # training loss of every batch
    lrs: list[float] = field(default_factory=list, repr=False)           # learning rate of every batch
    probs: torch.Tensor | None = field(default=None, repr=False)         # final class probabilities on data.valid
    data: TaskData | None = field(default=None, repr=False)
    learn: object | None = field(default=None, repr=False)  # the Learner engine's Learner (to fit further)

    @property
    def accuracy(self) -> float:
        return self.summary["accuracy"]

    @property
    def seconds(self) -> float:
        return self.summary["train_seconds"]

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def epochs(self) -> int:
        return self.summary["epochs_done"]


def summarize(cfg: TrainConfig, model: torch.nn.Module, scored: dict, history: list[dict], seconds: float,
              device: torch.device | str, classes, status: str = "finished", diverged: dict | None = None,
              interrupted: str | None = None) -> dict:
    """summary.json: how the run ended, its final scores (`scored` from inference.score) and what it cost."""
    accs = [log["accuracy"] for log in history if "accuracy" in log]
    return {"status": status, "diverged": diverged, "interrupted": interrupted, "accuracy": scored["accuracy"],
            "errors": scored["errors"], "n_valid": scored["n"], "valid_loss": scored["loss"],
            "best_accuracy": max(accs) if accs else scored["accuracy"], "epochs_done": len(history),
            "train_seconds": seconds, "params": n_params(model), "device": str(device), "classes": list(classes),
            "seed": cfg.seed, "engine": cfg.engine, "tta": cfg.tta}
