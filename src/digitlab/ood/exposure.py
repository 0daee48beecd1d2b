"""The "not a digit" head: a small network on the model's penultimate features and logits, trained to tell
digits from non-digits that digitlab makes itself (outlier exposure, Hendrycks et al. 2019, as a reject option).

The classifier is left as it is (its weights, hence its accuracy, do not change): the head reads what the model
already computes for every prediction, so the check costs one small matrix product. Digits: the training
split's images, and the same digits scanned at 8x8 (data/lowres.py), so that a coarse scan is still a digit.
Non-digits: data/outliers.py's train part (drawn shapes, strokes and scribbles, printed letters, Fashion-MNIST
training images), all prepared as `predict` prepares a picture. The threshold is then set on the validation
digits as for every detector (fitting.py); the valid part of the non-digits is left for choosing.
"""

from __future__ import annotations

import torch
from torch import nn

HIDDEN = 256       # the head's width: a linear head (no hidden layer) flagged 54% of the validation scribbles, this 87%
EPOCHS, BATCH, LR, WD = 30, 512, 1e-3, 1e-4


def head_input(logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return torch.cat([features.float(), logits.float()], 1)


def head_score(stats: dict[str, torch.Tensor], logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The head's logit for "not a digit" (N,): larger, less like a digit. The inputs' standardisation is folded
    into w1 and b1 (train_head), so that one picture's check is a handful of small operations."""
    hidden = torch.addmm(stats["b1"], head_input(logits, features), stats["w1"]).relu_()
    return torch.addmv(stats["b2"], hidden, stats["w2"])


def train_head(digits: torch.Tensor, others: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fit the head on head inputs of digits (N, D) and non-digits (M, D): standardised inputs, one hidden ReLU
    layer, binary cross-entropy with the two kinds weighted equally, Adam; the same statistics for the same
    inputs (seeded)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([digits, others]).float()
    y = torch.cat([torch.zeros(len(digits)), torch.ones(len(others))])
    weight = torch.where(y == 1, len(digits) / len(others), 1.0)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(x.shape[1], HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))
    opt = torch.optim.Adam(net.parameters(), LR, weight_decay=WD)
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            loss = nn.functional.binary_cross_entropy_with_logits(net(x[idx]).squeeze(1), y[idx], weight=weight[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    first, last = net[0].weight.detach(), net[2]
    w1 = (first / std).T.contiguous()            # (D, HIDDEN): x @ w1 == ((x - mean) / std) @ W' - mean/std @ W'
    b1 = net[0].bias.detach() - (mean / std) @ first.T
    return {"w1": w1, "b1": b1, "w2": last.weight.detach()[0].clone(), "b2": last.bias.detach()[0].clone()}
