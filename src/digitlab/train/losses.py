"""Loss functions written from tensor operations (tests compare them with PyTorch's)."""

from __future__ import annotations

import torch


def mnist_loss(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The book's loss for one output: how far sigmoid(preds) is from the target (1 for a 3, 0 for a 7; targets
    are 0 or 1, as float, int or bool).

    The book writes `torch.where(targets == 1, 1 - preds, preds).mean()`. For targets of 0 and 1 that is
    `|targets - preds|`: 1 - p where the target is 1, |0 - p| = p where it is 0, the same numbers bit for bit and
    the same gradients, in three operations instead of five (a tenth of a linear model's training step here;
    tests/test_losses.py checks the two forms agree exactly).
    """
    if targets.dtype == torch.bool:  # the book's comparison accepts bool targets; subtraction does not
        targets = targets.to(preds.dtype)
    return (targets - preds.sigmoid()).abs().mean()


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log(softmax(x)) along the last axis, stable for large logits (log-sum-exp with the max taken out)."""
    m = logits.max(-1, keepdim=True).values.detach()
    return logits - m - (logits - m).exp().sum(-1, keepdim=True).log()


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """Probabilities along the last axis."""
    return log_softmax(logits).exp()


def nll_loss(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the target classes. logp: (N, C), targets: (N,) int."""
    return -logp.gather(1, targets.view(-1, 1)).mean()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Softmax cross-entropy of (N, C) logits against (N,) class indices, with optional label smoothing."""
    logp = log_softmax(logits)
    loss = nll_loss(logp, targets)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * logp.mean(-1).mean()
    return loss


def uniform_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (N, C) logits against the uniform distribution: the outlier-exposure loss (Hendrycks et
    al., 2019), smallest when a non-digit gets equal probabilities for every class. log-sum-exp minus the mean
    logit is -mean(log_softmax), without forming it."""
    return (torch.logsumexp(logits, 1) - logits.mean(1)).mean()
