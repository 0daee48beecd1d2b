"""How well a detector separates in- from out-of-distribution images: AUROC, FPR at 95% TPR, shares flagged."""

from __future__ import annotations

import torch

from .detector import Detector


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
