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
HIDDEN_MAP, HEADS_MAP = 16, 4   # exposure_map's: four heads of 16, averaged, are one layer 64 wide. Seen while
                                # choosing on validation (not recorded): a 704 x 256 layer made a picture's check
                                # about twice as long for no more scribbles flagged, and four heads of 16 flagged a
                                # little more than one of 64
EPOCHS, BATCH, LR, WD = 30, 512, 1e-3, 1e-4


def head_input(logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return torch.cat([features.float(), logits.float()], 1)


def head_score(stats: dict[str, torch.Tensor], logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The head's logit for "not a digit" (N,): larger, less like a digit. The inputs' standardisation is folded
    into w1 and b1 (train_head), so that one picture's check is a handful of small operations."""
    return mlp_score(stats, head_input(logits, features))


def mlp_score(stats: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The head on its inputs (N, D): exposure_map's whole score, as its features already hold what the logits
    would add (they are a linear function of the penultimate features, which the head's first layer can fold in)."""
    hidden = torch.addmm(stats["b1"], x, stats["w1"]).relu_()
    return torch.addmv(stats["b2"], hidden, stats["w2"])


class Heads(nn.Module):
    """k heads of one hidden ReLU layer, each with its own weights (drawn as nn.Linear draws them, head by head)
    and its own batch: (k, B, D) -> (k, B). Trained side by side, each on its own order of the data (which is what
    makes them differ), then averaged: an ensemble of k for about the time of one, and one head k * hidden wide."""

    def __init__(self, d: int, hidden: int, k: int):
        super().__init__()
        layers = [(nn.Linear(d, hidden), nn.Linear(hidden, 1)) for _ in range(k)]
        self.w1 = nn.Parameter(torch.stack([first.weight.detach().T for first, _ in layers]))   # (k, D, hidden)
        self.b1 = nn.Parameter(torch.stack([first.bias.detach()[None] for first, _ in layers]))  # (k, 1, hidden)
        self.w2 = nn.Parameter(torch.stack([last.weight.detach().T for _, last in layers]))     # (k, hidden, 1)
        self.b2 = nn.Parameter(torch.stack([last.bias.detach()[None] for _, last in layers]))   # (k, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.b2, torch.baddbmm(self.b1, x, self.w1).relu(), self.w2)[..., 0]


def train_head(digits: torch.Tensor, others: torch.Tensor, seed: int = 0, hidden: int = HIDDEN, heads: int = 1
               ) -> dict[str, torch.Tensor]:
    """Fit the head on head inputs of digits (N, D) and non-digits (M, D): standardised inputs, one hidden ReLU
    layer, binary cross-entropy with the two kinds weighted equally, Adam; with `heads`, that many heads, each on
    its own order of the data, averaged. The same statistics for the same inputs (seeded)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([digits, others]).float()
    y = torch.cat([torch.zeros(len(digits)), torch.ones(len(others))])
    weight = torch.where(y == 1, len(digits) / len(others), 1.0)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = Heads(x.shape[1], hidden, heads)
    opt = torch.optim.Adam(net.parameters(), LR, weight_decay=WD)
    for _ in range(EPOCHS):
        orders = torch.stack([torch.randperm(len(x), generator=g) for _ in range(heads)])
        for i in range(0, len(x), BATCH):
            idx = orders[:, i:i + BATCH]
            # the heads' own losses summed: each learns as it would alone
            loss = nn.functional.binary_cross_entropy_with_logits(net(x[idx]), y[idx], weight=weight[idx]) * heads
            opt.zero_grad()
            loss.backward()
            opt.step()
    first = net.w1.detach().transpose(1, 2).reshape(-1, len(mean))   # (heads * hidden, D), head after head
    w1 = (first / std).T.contiguous()            # (D, hidden): x @ w1 == ((x - mean) / std) @ W' - mean/std @ W'
    b1 = net.b1.detach().flatten() - (mean / std) @ first.T
    return {"w1": w1, "b1": b1, "w2": net.w2.detach().flatten() / heads, "b2": net.b2.detach().mean()}
