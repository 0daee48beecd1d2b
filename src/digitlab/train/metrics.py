"""Metrics: what we care about, computed per batch as a mean (the Learner weights them by batch size)."""

from __future__ import annotations

import torch


def batch_accuracy(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Accuracy of one-output predictions: a 3 when sigmoid(preds) > 0.5 (the book's metric)."""
    correct = (preds.sigmoid() > 0.5) == targets
    return correct.float().mean()


def accuracy(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Accuracy of class scores (N, C) against class indices (N,)."""
    return (preds.argmax(-1) == targets).float().mean()


def exact_accuracy(preds: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of predicted class indices equal to the labels, as correct / total in Python floats, for final
    scores: a float32 mean makes 9970 right of 10000 fall just below 0.997, and a target be missed by rounding."""
    return (preds == labels).sum().item() / len(labels)


def error_rate(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - accuracy."""
    return 1 - accuracy(preds, targets)
