"""Confidence that means what it says: expected calibration error, negative log-likelihood, and temperature scaling
(Guo et al. 2017): one number T fitted on the validation split so that softmax(logits / T) is calibrated; the
argmax, and so the accuracy, is unchanged.

Functions take class probabilities (N, C), as digitlab.inference makes them: log(probs) differs from the logits by a
constant per row, so softmax(log(probs) / T) is softmax(logits / T).
"""

from __future__ import annotations

import torch

ECE_BINS = 15


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| weighted by the bin's share of images."""
    conf, pred = probs.max(1)
    right = (pred == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.bucketize(conf.double(), edges[1:-1], right=True)  # bin i holds (edges[i], edges[i + 1]]
    ece = 0.0
    for i in range(bins):
        inside = which == i
        if inside.any():
            ece += inside.double().mean().item() * abs(right[inside].mean().item() - conf[inside].double().mean().item())
    return ece


def nll(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the true classes."""
    return -probs.double().clamp_min(1e-12).log().gather(1, labels.view(-1, 1)).mean().item()


def apply_temperature(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(log(probs) / T): T > 1 softens over-confident probabilities, T < 1 sharpens them."""
    return torch.softmax(probs.double().clamp_min(1e-30).log() / temperature, dim=1).to(probs.dtype)


def fit_temperature(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the NLL of softmax(log(probs) / T) on these (validation) images: the NLL is convex
    in 1/T, so a golden-section search on log T over [0.05, 20] finds it to 1e-4."""
    logp = probs.double().clamp_min(1e-30).log()

    def loss(log_t: float) -> float:
        return torch.nn.functional.cross_entropy(logp / torch.tensor(log_t).exp(), labels).item()

    lo, hi, ratio = torch.tensor(0.05).log().item(), torch.tensor(20.0).log().item(), (5 ** 0.5 - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    while hi - lo > 1e-4:
        if loss(a) < loss(b):
            hi, b = b, a
            a = hi - ratio * (hi - lo)
        else:
            lo, a = a, b
            b = lo + ratio * (hi - lo)
    return float(torch.tensor((lo + hi) / 2).exp())


def calibration_report(final_probs: torch.Tensor, final_labels: torch.Tensor, temperature: float) -> dict:
    """ECE and NLL on the scored split, before and after the temperature (fitted elsewhere, on validation)."""
    calibrated = apply_temperature(final_probs, temperature)
    return {"temperature": temperature, "ece": expected_calibration_error(final_probs, final_labels),
            "nll": nll(final_probs, final_labels),
            "ece_calibrated": expected_calibration_error(calibrated, final_labels),
            "nll_calibrated": nll(calibrated, final_labels)}
