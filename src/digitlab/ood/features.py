"""A model's penultimate features (the input of its last nn.Linear), which most detectors read; for the detector
that learns non-digits, with a pooled inner map beside them."""

from __future__ import annotations

import torch
from torch import nn

from .. import inference
from .methods import OodError, method

INNER_MIN_SIDE = 7  # the inner map: the body's last map at least this wide (fastcnn: 64 x 7 x 7, its second block)
INNER_SIDE = 3      # pooled to 3x3 a channel: where in the picture strokes meet, turn and end, which the
                    # penultimate features (pooled over the whole picture) no longer say. Measured on validation
                    # with the shipped model (results/exposure-choice-map-third.json: exposure vs exposure_map):
                    # scribbles flagged 89% without it, 96% with it


def pooling(size: tuple[int, int], side: int):
    """x -> x's adaptive average pooling to side x side, for maps of `size`: a plain avg_pool2d where the windows
    are all alike (7 -> 3: 3 wide, 2 apart), which ONNX (the page's runtime) can run, and is a little faster."""
    kernels, strides = [], []
    for n in size:
        starts = [i * n // side for i in range(side)]
        ends = [-(-(i + 1) * n // side) for i in range(side)]
        widths = {e - s for s, e in zip(starts, ends)}
        step = starts[1] - starts[0] if side > 1 else 1
        if len(widths) > 1 or any(s != i * step for i, s in enumerate(starts)):
            return lambda x: nn.functional.adaptive_avg_pool2d(x, side)
        kernels.append(widths.pop())
        strides.append(step)
    return lambda x: nn.functional.avg_pool2d(x, kernels, strides)


class Tapped(nn.Module):
    """The body, returning its penultimate features with the map after child `tap` pooled to INNER_SIDE x
    INNER_SIDE beside them, place by place ((N, D + 9 C): a view of a channels-last map, no copy). The layers
    are called in a loop of its own: each call saved is a microsecond saved on every picture's check."""

    def __init__(self, body: nn.Sequential, tap: int, size: tuple[int, int]):
        super().__init__()
        if isinstance(body[-1], nn.Flatten):  # flattened here anyway
            body = body[:-1]
        self.before, self.after, self.pool = body[:tap + 1], body[tap + 1:], pooling(size, INNER_SIDE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.before:
            x = layer(x)
        inner = self.pool(x).permute(0, 2, 3, 1).flatten(1)
        for layer in self.after:
            x = layer(x)
        return torch.cat([x.flatten(1), inner], 1)


class Leading(nn.Module):
    """The model's head on the first n columns (its own input) of Tapped's output."""

    def __init__(self, n: int, head: nn.Sequential):
        super().__init__()
        self.n, self.head = n, head
        self.linear = head[0] if len(head) == 1 and isinstance(head[0], nn.Linear) else None

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        f = f.narrow(1, 0, self.n)   # one view op (indexing takes two): on every picture's check
        if self.linear is not None:  # the usual head, a lone Linear: called directly
            return nn.functional.linear(f, self.linear.weight, self.linear.bias)
        return self.head(f)


def _unroll(module: nn.Module, last: nn.Linear) -> list[nn.Module]:
    """The modules of `module` in forward order, opened up along the path to `last` (other parts stay whole)."""
    if module is last or not any(m is last for m in module.modules()):
        return [module]
    return [m for child in module.children() for m in _unroll(child, last)]


def split_head(model: nn.Module, inner: bool = False) -> tuple[nn.Module, nn.Module]:
    """(body, head) sharing the model's parameters, with head(body(x)) == model(x) and body(x) the input of the
    model's last nn.Linear: its penultimate features (`inner`: with the pooled inner map beside them, Tapped).
    Found by opening up the modules on the path to that Linear as if each ran its children in order, then checked
    on an input; a model built otherwise is refused."""
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
    return tapped(body, head, x.to(device), model) if inner else (body, head)


def tapped(body: nn.Sequential, head: nn.Sequential, x: torch.Tensor, model: nn.Module) -> tuple[Tapped, nn.Sequential]:
    """The split with the inner map beside the features: the body's last learned map (channels, not the picture
    itself) at least INNER_MIN_SIDE wide."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        maps, sizes = [], []
        for layer in body:
            x = layer(x)
            maps.append(x.dim() == 4 and x.shape[1] > 1 and min(x.shape[-2:]) >= INNER_MIN_SIDE)  # not the picture
            sizes.append(tuple(x.shape[-2:]))
        width = x.flatten(1).shape[1]
    model.train(was_training)
    if not any(maps):
        raise OodError(f"{type(model).__name__} has no inner map of at least {INNER_MIN_SIDE}x{INNER_MIN_SIDE} for the "
                       f"exposure_map detector; use exposure (`digitlab ood-fit RUN --detector exposure`).")
    tap = max(i for i, m in enumerate(maps) if m)
    return Tapped(body, tap, sizes[tap]), Leading(width, head)


def detector_parts(model: nn.Module, name: str) -> tuple[nn.Module, nn.Module] | None:
    """The split detector `name` reads its features through (None: it needs the scores alone)."""
    m = method(name)
    return split_head(model, inner=m.inner_map) if m.needs_features else None


def logits_and_features(model: nn.Module, images: torch.Tensor, parts: tuple[nn.Module, nn.Module] | None = None,
                        bs: int = 1024) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits (N, C), features (N, D) or None) as float32 on the CPU for images uint8 (N, 28, 28) or float in
    [0, 1], through inference's one loop; with `parts` (split_head(model)), the penultimate features too."""
    logits, feats = inference.logits_and_features(model, images, bs, parts=parts)
    return logits.cpu(), None if feats is None else feats.cpu()


def model_scorer(model: nn.Module, name: str):
    """A function images -> (logits, features or None): the features detector `name` reads where it needs them
    (refused clearly where the model has none to give), else the logits alone."""
    parts = detector_parts(model, name)
    return lambda images: logits_and_features(model, images, parts)
