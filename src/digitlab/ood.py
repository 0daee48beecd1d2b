"""Digit or not: out-of-distribution detectors that score how unlike the training images an input is.

Each detector turns a model's logits and penultimate features (the input of its last nn.Linear) into one score
per image, larger meaning less like a digit; an image whose score is above the detector's threshold is "not a
digit". The threshold is set on the validation split so that a chosen share of its digits (ACCEPT, 99%) is
accepted; the test split is never read for it.

Detectors (from the literature; compared in docs/predict.md, benchmarks/ood.py):
- msp:          -max softmax probability (Hendrycks & Gimpel 2017).
- energy:       -logsumexp of the logits (Liu et al. 2020).
- mahalanobis:  the smallest Mahalanobis distance of the features to a class mean, with one covariance shared
                by the classes, both fitted on the training split (Lee et al. 2018, without input perturbation).
- knn:          distance of the L2-normalised features to their k-th nearest neighbour in a bank of normalised
                training features (Sun et al. 2022).
- energy_mahalanobis: the sum of the energy and Mahalanobis scores, each standardised by its mean and standard
                deviation on the training split: one looks at the scores, the other at the features (in the
                spirit of ViM, Wang et al. 2022, which adds a feature-space score to the energy).

Pure: tensors in, scores out. The fitted statistics travel as tensors in the model's safetensors file
(`weights.save_model(..., extra=...)`), the name and threshold in its metadata (`ood` key).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .data.mnist import Split
from .data.tasks import TaskData, as_model_input
from .errors import DigitlabError

DETECTORS = ("msp", "energy", "mahalanobis", "knn", "energy_mahalanobis")
DEFAULT = "mahalanobis"   # chosen by measurement with the shipped model: benchmarks/results/ood.json, docs/predict.md
ACCEPT = 0.99              # share of validation digits accepted by the threshold
KNN_K = 10                 # neighbour whose distance is the kNN score
KNN_BANK = 5000            # training images in the kNN bank (stored in the model file)
MAX_FEATURES = 2048        # mahalanobis and knn refuse wider features (a 10240-wide covariance is 400 MB)
STATS = {"msp": (), "energy": (), "mahalanobis": ("whiten", "means_twice", "means_sq"), "knn": ("bank", "k"),
         "energy_mahalanobis": ("whiten", "means_twice", "means_sq", "energy_weight", "offset")}  # what each stores
PREFIX = "ood."            # the statistics' names in the safetensors file
META_KEY = "ood"           # the detector's entry in the model's metadata


class OodError(DigitlabError, ValueError):
    """A detector that cannot apply to this model, or statistics that do not fit it."""


@dataclass
class Detector:
    """A fitted detector: its name, statistics (tensors), threshold on the score and how they were made."""
    name: str
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    threshold: float | None = None
    info: dict = field(default_factory=dict)   # accept rate, where fitted and thresholded, image counts

    def score(self, logits: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (N,): larger means less like the training images."""
        return score(self.name, self.stats, logits, features)

    def flag(self, scores: torch.Tensor) -> torch.Tensor:
        """True where a score is over the threshold: not a digit (nothing is flagged without a threshold)."""
        if self.threshold is None:
            return torch.zeros(len(scores), dtype=torch.bool)
        return scores > self.threshold

    def flags(self, score: float) -> bool:
        """`flag` for one plain score (the web API's hot path: no tensor made)."""
        return self.threshold is not None and score > self.threshold

    @property
    def needs_features(self) -> bool:
        return self.name not in ("msp", "energy")

    def to_meta(self) -> dict:
        """What goes in the model's metadata (the tensors go in the file under PREFIX)."""
        return {"detector": self.name, "threshold": self.threshold, **self.info}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {PREFIX + k: v.contiguous() for k, v in self.stats.items()}

    @classmethod
    def from_meta(cls, meta: dict, tensors: dict[str, torch.Tensor]) -> "Detector | None":
        """The detector stored with a model (None where there is none)."""
        entry = meta.get(META_KEY)
        if not entry:
            return None
        name = entry.get("detector")
        if name not in DETECTORS:
            raise OodError(f"the model's metadata names detector {name!r}, which this digitlab does not know "
                           f"({', '.join(DETECTORS)}); attach one again with `digitlab ood-fit`.")
        stats = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
        missing = [k for k in STATS[name] if k not in stats]
        threshold = entry.get("threshold")
        if missing or not (threshold is None or isinstance(threshold, (int, float)) and abs(threshold) < float("inf")):
            raise OodError(f"the model file's {name} detector is incomplete (missing {missing}, threshold "
                           f"{threshold!r}); attach it again with `digitlab ood-fit`.")
        info = {k: v for k, v in entry.items() if k not in ("detector", "threshold")}
        return cls(name, stats, threshold, info)


# ---- the model's penultimate features ----

def _unroll(module: nn.Module, last: nn.Linear) -> list[nn.Module]:
    """The modules of `module` in forward order, opened up along the path to `last` (other parts stay whole)."""
    if module is last or not any(m is last for m in module.modules()):
        return [module]
    return [m for child in module.children() for m in _unroll(child, last)]


def split_head(model: nn.Module) -> tuple[nn.Sequential, nn.Sequential]:
    """(body, head) sharing the model's parameters, with head(body(x)) == model(x) and body(x) the input of the
    model's last nn.Linear: its penultimate features. Found by opening up the modules on the path to that
    Linear as if each ran its children in order, then checked on an input; a model built otherwise is refused."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise OodError("the model has no nn.Linear layer, so it has no penultimate features for this detector; "
                       "use the energy or msp detector (`digitlab ood-fit RUN --detector energy`).")
    chain = _unroll(model, linears[-1])
    i = next(i for i, m in enumerate(chain) if m is linears[-1])
    body, head = nn.Sequential(*chain[:i]), nn.Sequential(*chain[i:])
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            got, want = head(body(x.to(device))), model(x.to(device))
            same = got.shape == want.shape and torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    except RuntimeError:  # the layers in order do not even fit together
        same = False
    finally:
        model.train(was_training)
    if not same:
        raise OodError(f"cannot find the penultimate features of {type(model).__name__}: its forward is not its "
                       f"layers in order. Use the energy or msp detector (`digitlab ood-fit RUN --detector energy`), which need only the scores.")
    return body, head


@torch.no_grad()
def logits_and_features(body: nn.Module | None, head: nn.Module, images: torch.Tensor, bs: int = 1024
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits (N, C), features (N, D)) as float32 on the CPU for images uint8 (N, 28, 28) or float in [0, 1],
    in eval mode; with no body, `head` is the whole model and the features are None."""
    device = next(head.parameters()).device
    logits, feats = [], []
    for i in range(0, len(images), bs):
        xb = as_model_input(images[i:i + bs].to(device))
        f = body(xb).flatten(1) if body is not None else xb
        logits.append(head(f).float().cpu())
        if body is not None:
            feats.append(f.float().cpu())
    if not logits:
        return torch.empty(0, 0), (torch.empty(0, 0) if body is not None else None)
    if len(logits) == 1:  # one batch (a lone request): no copy
        return logits[0], (feats[0] if body is not None else None)
    return torch.cat(logits), (torch.cat(feats) if body is not None else None)


# ---- scores ----

def score(name: str, stats: dict[str, torch.Tensor], logits: torch.Tensor,
          features: torch.Tensor | None = None) -> torch.Tensor:
    """Detector `name`'s scores (N,) from logits (N, C) and features (N, D): larger = less like a digit."""
    if name == "msp":
        return -torch.softmax(logits.float(), 1).amax(1)
    if name == "energy":
        return -torch.logsumexp(logits.float(), 1)
    if features is None:
        raise OodError(f"detector {name} needs the model's penultimate features.")
    f = features.float()
    if name == "mahalanobis":
        return mahalanobis(f, stats["whiten"], stats["means_twice"], stats["means_sq"])
    if name == "knn":
        return knn_distance(f, stats["bank"], int(stats["k"]))
    if name == "energy_mahalanobis":
        # whiten and means are pre-scaled by the Mahalanobis scores' std, and the energy's std and both means folded
        # into energy_weight and offset: standardised energy + standardised Mahalanobis in a few tensor ops
        maha = mahalanobis(f, stats["whiten"], stats["means_twice"], stats["means_sq"])
        return maha - torch.logsumexp(logits.float(), 1) * stats["energy_weight"] + stats["offset"]
    raise OodError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}.")


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


def fit_stats(name: str, features: torch.Tensor, labels: torch.Tensor, n_classes: int,
              logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The statistics detector `name` needs, from training features (N, D), class indices (N,) and (for
    energy_mahalanobis) logits (N, C)."""
    if name in ("msp", "energy"):
        return {}
    if name == "energy_mahalanobis":
        stats = fit_stats("mahalanobis", features, labels, n_classes)
        energy = score("energy", {}, logits).double()
        maha = score("mahalanobis", stats, logits, features).double()
        (e_mean, e_std), (m_mean, m_std) = (energy.mean(), energy.std()), (maha.mean(), maha.std())
        return {"whiten": (stats["whiten"].double() / m_std.sqrt()).float(),
                "means_twice": (stats["means_twice"].double() / m_std.sqrt()).float(),
                "means_sq": (stats["means_sq"].double() / m_std).float(),
                "energy_weight": (1 / e_std).float(), "offset": (-e_mean / e_std - m_mean / m_std).float()}
    if features.shape[1] > MAX_FEATURES:
        raise OodError(f"detector {name} needs penultimate features of at most {MAX_FEATURES} values; this model's "
                       f"have {features.shape[1]}. Use the energy or msp detector (`digitlab ood-fit RUN --detector energy`).")
    f = features.double()
    if name == "mahalanobis":
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
    if name == "knn":
        step = max(1, len(f) // KNN_BANK)  # an even spread over the training split, same for every run
        bank = nn.functional.normalize(features.float()[::step][:KNN_BANK], dim=1)
        return {"bank": bank, "k": torch.tensor(KNN_K)}
    raise OodError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}.")


def threshold_for(scores: torch.Tensor, accept: float = ACCEPT) -> float:
    """The score under which a share `accept` of these (validation) images falls."""
    if not len(scores):
        raise OodError("no images to set the threshold on.")
    return float(torch.quantile(scores.double(), accept))


class ScoredModel(nn.Module):
    """A model with its detector: x -> (logits (N, C), detector scores (N,)), in one forward pass, with the
    statistics as buffers: what the ONNX and TorchScript exports of a model with a detector run."""

    def __init__(self, model: nn.Module, detector: Detector):
        super().__init__()
        self.name = detector.name
        body, head = split_head(model) if detector.needs_features else (None, model)
        self.body, self.head = body, head
        self.k = int(detector.stats["k"]) if "k" in detector.stats else 0
        self.stat_names = [k for k in detector.stats if k != "k"]
        for k in self.stat_names:
            self.register_buffer("stat_" + k, detector.stats[k].float().clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.body is None:
            logits, f = self.head(x), None
        else:
            f = self.body(x).flatten(1)
            logits = self.head(f)
        stats = {k: getattr(self, "stat_" + k) for k in self.stat_names}
        return logits, score(self.name, {**stats, "k": self.k}, logits, f)


# ---- measures ----

def auroc(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """Probability that an out-of-distribution image scores above an in-distribution one (ties count half)."""
    both = torch.cat([in_scores, out_scores]).double()
    ranks = torch.empty_like(both)
    order = both.argsort()
    ranks[order] = torch.arange(1, len(both) + 1, dtype=torch.float64)
    # average the ranks of ties, so equal scores count half
    uniq, inverse = torch.unique(both, return_inverse=True)
    mean_rank = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, ranks)
    mean_rank /= torch.bincount(inverse, minlength=len(uniq)).double()
    r_out = mean_rank[inverse[len(in_scores):]].sum()
    n_in, n_out = len(in_scores), len(out_scores)
    return float((r_out - n_out * (n_out + 1) / 2) / (n_in * n_out))


def fpr_at_tpr(in_scores: torch.Tensor, out_scores: torch.Tensor, tpr: float = 0.95) -> float:
    """Share of out-of-distribution images accepted when the threshold accepts `tpr` of the in-distribution ones."""
    t = torch.quantile(in_scores.double(), tpr)
    return float((out_scores.double() <= t).double().mean())


def ood_report(detector: Detector, in_scores: torch.Tensor, out_scores: torch.Tensor,
               in_correct: torch.Tensor | None = None) -> dict:
    """AUROC, FPR at 95% TPR, and at the detector's threshold: the share of out-of-distribution images flagged,
    of in-distribution ones flagged, and the accuracy of the in-distribution images accepted."""
    rep = {"detector": detector.name, "threshold": detector.threshold, "n_in": len(in_scores),
           "n_out": len(out_scores), "auroc": auroc(in_scores, out_scores),
           "fpr_at_95_tpr": fpr_at_tpr(in_scores, out_scores)}
    if detector.threshold is not None:
        flagged_in = detector.flag(in_scores)
        rep.update(out_flagged=float(detector.flag(out_scores).double().mean()),
                   in_flagged=float(flagged_in.double().mean()))
        if in_correct is not None:
            kept = ~flagged_in
            rep.update(accuracy_all=float(in_correct.double().mean()),
                       accuracy_accepted=float(in_correct[kept].double().mean()) if kept.any() else None)
    return rep


# ---- fitting on a task's splits ----

FIT_IMAGES = 10000   # training images the statistics are fitted on (evenly spread): enough for a 256-wide
                     # covariance, and it keeps the fit to seconds after a run on 2 CPU cores


def spread(split: Split, n: int | None) -> Split:
    """At most n images of a split, evenly spread over it (the same ones every time)."""
    if n is None or len(split) <= n:
        return split
    idx = torch.linspace(0, len(split) - 1, n).round().long()
    return Split(split.images[idx], split.labels[idx])


def model_scorer(model: nn.Module, name: str):
    """A function images -> (logits, features or None) for detector `name`: the features where it needs them
    (refused clearly where the model has none to give), else the logits alone."""
    body, head = (None, model) if name in ("msp", "energy") else split_head(model)
    return lambda images: logits_and_features(body, head, images)


def fit_detector(model: nn.Module, data: TaskData, name: str = DEFAULT, accept: float = ACCEPT,
                 fit_images: int | None = FIT_IMAGES) -> Detector:
    """Fit detector `name` for a trained model: statistics on its training split (at most `fit_images`, evenly
    spread), then the threshold that accepts a share `accept` of the validation split. The test split is never
    read. A task without validation images (valid_size=0) gets its threshold from the training images,
    labelled so (`threshold_on: "train"`): in-sample, so it rejects somewhat more new digits than `accept` says."""
    if name not in DETECTORS:
        raise OodError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}.")
    if not 0.5 <= accept < 1:
        raise OodError(f"the accepted share of validation digits must be in [0.5, 1), got {accept}.")
    was_training = model.training
    model.eval()
    try:
        return _fit(model, data, name, accept, fit_images)
    finally:
        model.train(was_training)


def _fit(model: nn.Module, data: TaskData, name: str, accept: float, fit_images: int | None) -> Detector:
    scorer = model_scorer(model, name)
    train = spread(data.train, fit_images)
    logits, features = scorer(train.images)
    stats = fit_stats(name, features, train.labels, len(data.classes), logits) if features is not None else {}
    on, held = ("valid", data.valid) if len(data.valid) else ("train", train)
    detector = Detector(name, stats)
    held_scores = detector.score(*scorer(held.images)) if held is not train else detector.score(logits, features)
    detector.threshold = threshold_for(held_scores, accept)
    detector.info = {"accept": accept, "threshold_on": on, "n_threshold": len(held), "fitted_on": "train",
                     "n_fit": len(train)}
    return detector


def fit_or_fallback(model: nn.Module, data: TaskData, name: str = DEFAULT, **kw) -> Detector:
    """fit_detector, falling back to the energy score (which needs only the logits) for a model whose features
    the chosen detector cannot use (the reason is recorded in the detector's info)."""
    try:
        return fit_detector(model, data, name, **kw)
    except OodError as e:
        if name == "energy":
            raise
        detector = fit_detector(model, data, "energy", **kw)
        detector.info["fallback"] = f"{name}: {e}"
        return detector


def for_record(model: nn.Module, data: TaskData | None, name: str = DEFAULT) -> tuple[dict, dict[str, torch.Tensor]]:
    """What runs.record_run adds to a new run's model file: ({META_KEY: detector metadata}, statistics tensors);
    nothing for a run without its data."""
    if data is None or not len(data.train):
        return {}, {}
    detector = fit_or_fallback(model, data, name)
    return {META_KEY: detector.to_meta()}, detector.tensors()
