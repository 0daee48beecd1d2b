"""What a training run returns, whichever engine ran it: the model, its history and its final scores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .. import calibration, inference
from ..config import TrainConfig
from ..data.mnist import Split
from ..data.tasks import TaskData
from ..hardware import Precision, describe_machine
from ..models.layers import n_params


@dataclass
class TrainResult:
    config: TrainConfig                 # the config that ran (its seed and epochs are this run's)
    model: torch.nn.Module
    summary: dict                       # final scores and facts of the run (summary.json); see `summarize`
    history: list[dict]                 # one log per epoch: epoch, train_loss, and what the engine measured
    batch_losses: list[float] = field(default_factory=list, repr=False)  # training loss of every batch
    lrs: list[float] = field(default_factory=list, repr=False)           # learning rate of every batch
    probs: torch.Tensor | None = field(default=None, repr=False)         # final probabilities on data.final
    data: TaskData | None = field(default=None, repr=False)
    learn: object | None = field(default=None, repr=False)  # the Learner engine's Learner (to fit further)

    @property
    def accuracy(self) -> float:
        """The final score: on the test split where the task has one (scored once), else on valid."""
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


def final_scores(probs_of: Callable[[Split], torch.Tensor], data: TaskData) -> tuple[dict, torch.Tensor]:
    """Score the trained model once: the validation split (what choices read), a temperature fitted on it, then
    the test split, read here for the first time. (scores for the summary, probabilities on data.final)"""
    scores: dict = {"valid_accuracy": None, "valid_errors": None, "n_valid": len(data.valid), "valid_loss": None,
                    "test_accuracy": None, "test_errors": None, "n_test": None, "test_loss": None}
    temperature, final = 1.0, None
    if len(data.valid):
        valid_probs = probs_of(data.valid)
        v = inference.score(valid_probs, data.valid.labels)
        scores.update(valid_accuracy=v["accuracy"], valid_errors=v["errors"], valid_loss=v["loss"])
        temperature = calibration.fit_temperature(valid_probs, data.valid.labels)
        final = valid_probs
    if data.test is not None:
        final = probs_of(data.test)
        t = inference.score(final, data.test.labels)
        scores.update(test_accuracy=t["accuracy"], test_errors=t["errors"], n_test=t["n"], test_loss=t["loss"])
    labels = data.final.labels
    headline = inference.score(final, labels)
    scores.update(accuracy=headline["accuracy"], errors=headline["errors"], n=headline["n"],
                  **calibration.calibration_report(final, labels, temperature))
    return scores, final


def summarize(cfg: TrainConfig, model: torch.nn.Module, scores: dict, history: list[dict], seconds: float,
              device: torch.device | str, classes, precision: Precision, status: str = "finished",
              diverged: dict | None = None, interrupted: str | None = None) -> dict:
    """summary.json: how the run ended, its final scores (from `final_scores`: accuracy and errors of the final
    split, valid_* and test_* apart, calibration) and what it cost. best_accuracy is the best epoch's validation
    accuracy."""
    accs = [log["accuracy"] for log in history if "accuracy" in log]
    return {"status": status, "diverged": diverged, "interrupted": interrupted, **scores,
            "best_accuracy": max(accs) if accs else scores["valid_accuracy"], "epochs_done": len(history),
            "train_seconds": seconds, "params": n_params(model), "device": str(device), "classes": list(classes),
            "seed": cfg.seed, "engine": cfg.engine, "tta": cfg.tta, "precision": precision.name,
            "precision_reason": precision.reason, "machine": describe_machine(device)}
