"""The detectors by name: how each scores an image from a model's logits and features, and what it fits.

A detector is a Method in METHODS: its score (larger: less like the training images), the statistics it fits on
the training split's features, and whether it needs the features at all. `score` and `fit_stats` look the method
up by name; adding a detector is adding an entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import DigitlabError
from .exposure import head_score, mlp_score

KNN_K = 10                 # neighbour whose distance is the kNN score
KNN_BANK = 5000            # training images in the kNN bank (stored in the model file)
MAX_FEATURES = 2048        # mahalanobis and knn refuse wider features (a 10240-wide covariance is 400 MB)


class OodError(DigitlabError, ValueError):
    """A detector that cannot apply to this model, or statistics that do not fit it."""


Stats = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Method:
    """One detector: score(stats, logits (N, C), features (N, D) or None) -> (N,), and fit(features, labels,
    n_classes, logits) -> stats (the tensors stored with the model, named in `stats`). A method that learns from
    non-digits (`needs_outliers`) is fitted by fitting.py from pictures instead: its `fit` is never called. One
    that reads an inner map too (`inner_map`) gets features with a pooled copy of it beside the penultimate ones
    (features.split_head)."""
    score: Callable[[Stats, torch.Tensor, torch.Tensor | None], torch.Tensor]
    fit: Callable[[torch.Tensor, torch.Tensor, int, torch.Tensor], Stats]
    stats: tuple[str, ...] = ()
    needs_features: bool = True
    needs_outliers: bool = False
    inner_map: bool = False


def mahalanobis(f: torch.Tensor, whiten: torch.Tensor, means_twice: torch.Tensor, means_sq: torch.Tensor
                ) -> torch.Tensor:
    """min over classes c of (f - mu_c)' P (f - mu_c) with P = L L': with z = f L and m_c = mu_c L it is
    |z|^2 - 2 z.m_c + |m_c|^2 (means_twice is 2 M' (D, C), means_sq |m_c|^2 (C,)): two matrix products."""
    z = f @ whiten
    return torch.addmm(means_sq, z, means_twice, alpha=-1).add_((z * z).sum(1, keepdim=True)).amin(1)


def knn_distance(f: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """Euclidean distance of normalised f to its k-th nearest normalised bank row: sqrt(2 - 2 cos)."""
    cos = nn.functional.normalize(f, dim=1) @ bank.T
    kth = cos.topk(min(k, bank.shape[0]), dim=1).values[:, -1]
    return (2 - 2 * kth).clamp_min(0).sqrt()


def energy(logits: torch.Tensor) -> torch.Tensor:
    return -torch.logsumexp(logits.float(), 1)


def check_width(features: torch.Tensor, name: str) -> torch.Tensor:
    if features.shape[1] > MAX_FEATURES:
        raise OodError(f"detector {name} needs penultimate features of at most {MAX_FEATURES} values; this model's "
                       f"have {features.shape[1]}. Use the energy or msp detector (`digitlab ood-fit RUN --detector energy`).")
    return features.double()


def fit_mahalanobis(features: torch.Tensor, labels: torch.Tensor, n_classes: int, logits=None) -> Stats:
    """Class means and one shared covariance of the training features, as a whitening matrix L (P = L L')."""
    f = check_width(features, "mahalanobis")
    means = torch.stack([f[labels == c].mean(0) if (labels == c).any() else f.mean(0) for c in range(n_classes)])
    centred = f - means[labels]
    cov = centred.T @ centred / len(f)
    # a small ridge keeps the inverse finite where features are constant (dead ReLUs)
    cov += torch.eye(cov.shape[0], dtype=cov.dtype) * (1e-6 * cov.diagonal().mean() + 1e-12)
    precision = torch.linalg.inv(cov)
    try:
        whiten = torch.linalg.cholesky((precision + precision.T) / 2)  # P = L L'
    except torch.linalg.LinAlgError:
        raise OodError("the features' covariance cannot be inverted (too few training images for their "
                       "width?); use the energy or msp detector.") from None
    m = means @ whiten
    return {"whiten": whiten.float(), "means_twice": (2 * m.T).float(), "means_sq": (m * m).sum(1).float()}


def fit_knn(features: torch.Tensor, labels=None, n_classes=None, logits=None) -> Stats:
    """An even spread of the normalised training features (the same for every run) as the bank."""
    check_width(features, "knn")
    step = max(1, len(features) // KNN_BANK)
    return {"bank": nn.functional.normalize(features.float()[::step][:KNN_BANK], dim=1), "k": torch.tensor(KNN_K)}


def fit_energy_mahalanobis(features: torch.Tensor, labels: torch.Tensor, n_classes: int, logits: torch.Tensor
                           ) -> Stats:
    """Mahalanobis' statistics pre-scaled by its scores' std, and the energy's std and both means folded into
    energy_weight and offset: standardised energy + standardised Mahalanobis in a few tensor ops."""
    stats = fit_mahalanobis(features, labels, n_classes)
    e = energy(logits).double()
    maha = mahalanobis(features.float(), stats["whiten"], stats["means_twice"], stats["means_sq"]).double()
    (e_mean, e_std), (m_mean, m_std) = (e.mean(), e.std()), (maha.mean(), maha.std())
    return {"whiten": (stats["whiten"].double() / m_std.sqrt()).float(),
            "means_twice": (stats["means_twice"].double() / m_std.sqrt()).float(),
            "means_sq": (stats["means_sq"].double() / m_std).float(),
            "energy_weight": (1 / e_std).float(), "offset": (-e_mean / e_std - m_mean / m_std).float()}


def no_stats(*_) -> Stats:
    return {}


MAHA = ("whiten", "means_twice", "means_sq")
METHODS: dict[str, Method] = {
    "msp": Method(lambda s, logits, f: -torch.softmax(logits.float(), 1).amax(1), no_stats, (), False),
    "energy": Method(lambda s, logits, f: energy(logits), no_stats, (), False),
    "mahalanobis": Method(lambda s, logits, f: mahalanobis(f, s["whiten"], s["means_twice"], s["means_sq"]),
                          fit_mahalanobis, MAHA),
    "knn": Method(lambda s, logits, f: knn_distance(f, s["bank"], int(s["k"])), fit_knn, ("bank", "k")),
    "energy_mahalanobis": Method(
        lambda s, logits, f: mahalanobis(f, s["whiten"], s["means_twice"], s["means_sq"])
        + energy(logits) * s["energy_weight"] + s["offset"],
        fit_energy_mahalanobis, (*MAHA, "energy_weight", "offset")),
    "exposure": Method(lambda s, logits, f: head_score(s, logits, f), no_stats,
                       ("w1", "b1", "w2", "b2"), needs_outliers=True),
    # four such heads on the features and a pooled inner map (no logits): the shipped model's (docs/predict.md)
    "exposure_map": Method(lambda s, logits, f: mlp_score(s, f), no_stats,
                           ("w1", "b1", "w2", "b2"), needs_outliers=True, inner_map=True),
}
DETECTORS = tuple(METHODS)


def method(name: str) -> Method:
    if name not in METHODS:
        raise OodError(f"unknown detector {name!r}; choose one of {', '.join(METHODS)}.")
    return METHODS[name]


def score(name: str, stats: Stats, logits: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
    """Detector `name`'s scores (N,) from logits (N, C) and features (N, D): larger = less like a digit."""
    m = method(name)
    if m.needs_features and features is None:
        raise OodError(f"detector {name} needs the model's penultimate features.")
    return m.score(stats, logits, None if features is None else features.float())


def fit_stats(name: str, features: torch.Tensor, labels: torch.Tensor, n_classes: int,
              logits: torch.Tensor | None = None) -> Stats:
    """The statistics detector `name` needs, from training features (N, D), class indices (N,) and logits (N, C)."""
    if method(name).needs_outliers:
        raise OodError(f"detector {name} learns from pictures of non-digits, not from training features alone: "
                       "fit it with ood.fit_detector (or `digitlab ood-fit RUN --detector exposure`).")
    return method(name).fit(features, labels, n_classes, logits)
