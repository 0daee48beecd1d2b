"""A fitted detector as it travels with a model: name, statistics, threshold, and how they were made; and the
model with its detector as one module, for the exports."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .features import detector_parts
from .methods import METHODS, OodError, score

ACCEPT = 0.99              # share of validation digits accepted by the threshold
PREFIX = "ood."            # the statistics' names in the safetensors file
META_KEY = "ood"           # the detector's entry in the model's metadata


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
        if name not in METHODS:
            raise OodError(f"the model's metadata names detector {name!r}, which this digitlab does not know "
                           f"({', '.join(METHODS)}); attach one again with `digitlab ood-fit`.")
        stats = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
        missing = [k for k in METHODS[name].stats if k not in stats]
        threshold = entry.get("threshold")
        if missing or not (threshold is None or isinstance(threshold, (int, float)) and abs(threshold) < float("inf")):
            raise OodError(f"the model file's {name} detector is incomplete (missing {missing}, threshold "
                           f"{threshold!r}); attach it again with `digitlab ood-fit`.")
        info = {k: v for k, v in entry.items() if k not in ("detector", "threshold")}
        return cls(name, stats, threshold, info)


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
        body, head = detector_parts(model, detector.name) or (None, model)
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
