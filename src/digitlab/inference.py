"""Class probabilities in batches: the one inference path behind evaluation, ensembles, predict (with the
detector's features), interpretation and the fast path, with and without test-time augmentation (TTA).

Images come as uint8 (N, 28, 28) the way the data layer stores them, or as floats (N, 28, 28) in [0, 1] the way
`data.images.prepare_image` makes them; the model sees float (N, 1, 28, 28) in [0, 1].
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from .data.tasks import as_model_input

# The image itself and fixed one-pixel shifts (training shifts are up to 2 pixels); their mean is the TTA answer.
TTA_SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shift_images(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Move (N, 1, H, W) images dx pixels right and dy pixels down, filling with black (0)."""
    if dx == 0 and dy == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))  # (left, right, top, bottom)
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top:top + h, left:left + w]


def logits(model: torch.nn.Module, images: torch.Tensor, bs: int = 1024, shift: tuple[int, int] = (0, 0),
           autocast: Callable[[], contextlib.AbstractContextManager] | None = None, mirror: bool = False
           ) -> torch.Tensor:
    """Scores (N, C) as float32 on the model's device (`logits_and_features` without the features)."""
    return logits_and_features(model, images, bs, shift=shift, autocast=autocast, mirror=mirror)[0]


@torch.no_grad()
def logits_and_features(model: torch.nn.Module, images: torch.Tensor, bs: int = 1024,
                        parts: tuple[torch.nn.Module, torch.nn.Module] | None = None,
                        shift: tuple[int, int] = (0, 0),
                        autocast: Callable[[], contextlib.AbstractContextManager] | None = None, mirror: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The one batched inference loop: (logits (N, C), features (N, D) or None), float32 on the model's device,
    in eval mode (restored after), `bs` images at a time, of the images moved by `shift` and, with `mirror`,
    flipped left to right. With `parts`, the model split at its last linear layer (ood.split_head: the same
    modules), the features are that layer's input, which the "not a digit" detector reads. `autocast` makes the
    context each batch runs in (the fast path's bf16)."""
    was_training = model.training
    if was_training:  # a model already in eval mode (every served request) is not walked again
        model.eval()
    device = next(model.parameters()).device
    body, head = parts if parts is not None else (None, model)
    logits_out, feats = [], []
    try:
        for i in range(0, len(images), bs):
            xb = shift_images(as_model_input(images[i:i + bs].to(device)), *shift)
            if mirror:
                xb = xb.flip(-1)
            with autocast() if autocast is not None else contextlib.nullcontext():
                f = xb
                if body is not None:
                    f = body(xb)
                    if f.dim() > 2:  # a body ending in a map (Tapped's output is flat already)
                        f = f.flatten(1)
                logits_out.append(head(f).float())
            if body is not None:
                feats.append(f.float())
    finally:
        if was_training:
            model.train()
    if not logits_out:
        return torch.empty(0, 0, device=device), (torch.empty(0, 0, device=device) if body is not None else None)
    join = (lambda xs: xs[0]) if len(logits_out) == 1 else torch.cat  # one batch (a lone request): no copy
    return join(logits_out), (join(feats) if body is not None else None)


def class_probs(model: torch.nn.Module, images: torch.Tensor, bs: int = 1024, tta: bool = False,
                autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
                mirror: bool = False) -> torch.Tensor:
    """Probabilities (N, C) on the CPU; with `tta`, the mean over TTA_SHIFTS, and with `mirror` too (a model
    trained on mirrored images, TrainConfig.aug_flip) over each shift's mirror image as well."""
    views = [(s, m) for s in (TTA_SHIFTS if tta else TTA_SHIFTS[:1]) for m in ((False, True) if tta and mirror else (False,))]
    total = sum(torch.softmax(logits(model, images, bs, s, autocast, m), dim=-1) for s, m in views)
    return (total / len(views)).cpu()


def ensemble_probs(members: Iterable[torch.Tensor]) -> torch.Tensor:
    """One equal vote per model: the sum of the members' probabilities (argmax is the ensemble's answer)."""
    total = None
    for probs in members:
        total = probs.clone() if total is None else total.add_(probs)
    if total is None:
        raise ValueError("an ensemble needs at least one member's probabilities.")
    return total


def score(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy, errors and mean cross-entropy of probabilities (N, C) against class indices (N,), with each
    image's prediction and loss."""
    labels = labels.to(probs.device)
    preds = probs.argmax(1)
    losses = -probs.clamp_min(1e-12).log().gather(1, labels.view(-1, 1)).squeeze(1)
    errors = int((preds != labels).sum())
    n = len(labels)
    return {"accuracy": (n - errors) / n if n else float("nan"), "errors": errors, "n": n,
            "loss": losses.mean().item() if n else float("nan"), "preds": preds, "losses": losses, "probs": probs}
