"""A model's penultimate features (the input of its last nn.Linear), which most detectors read."""

from __future__ import annotations

import torch
from torch import nn

from .. import inference
from .methods import OodError


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


def logits_and_features(model: nn.Module, images: torch.Tensor, parts: tuple[nn.Module, nn.Module] | None = None,
                        bs: int = 1024) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits (N, C), features (N, D) or None) as float32 on the CPU for images uint8 (N, 28, 28) or float in
    [0, 1], through inference's one loop; with `parts` (split_head(model)), the penultimate features too."""
    logits, feats = inference.logits_and_features(model, images, bs, parts=parts)
    return logits.cpu(), None if feats is None else feats.cpu()


def model_scorer(model: nn.Module, needs_features: bool):
    """A function images -> (logits, features or None): the features where the detector needs them (refused
    clearly where the model has none to give), else the logits alone."""
    parts = split_head(model) if needs_features else None
    return lambda images: logits_and_features(model, images, parts)
