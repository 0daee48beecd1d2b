"""One registry from model name to builder, so configs and checkpoints can name a model."""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import ConfigError

from .linear import linear_model
from .mlp import simple_net

MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": lambda n_out=1: linear_model(28 * 28, n_out),
    "simple_net": lambda n_out=1: simple_net(28 * 28, 30, n_out),
}


def build_model(name: str, n_out: int = 1) -> nn.Module:
    """Build a registered model with `n_out` outputs."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}.")
    return MODELS[name](n_out=n_out)
