"""Models, by name: `build_model(name, n_out)`."""

from .linear import Linear1, init_params, linear_model
from .mlp import SimpleNetByHand, simple_net
from .registry import MODELS, build_model

__all__ = ["Linear1", "init_params", "linear_model", "SimpleNetByHand", "simple_net", "MODELS", "build_model"]
