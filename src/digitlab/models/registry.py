"""One registry from model name to builder, so configs and checkpoints can name a model.

Every registered model takes float images (N, 1, 28, 28) in [0, 1] and returns (N, n_classes) scores; any
normalisation is a layer inside the model, so saved and exported models need no preprocessing beyond that.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import ConfigError
from .cnn import cnn
from .fastcnn import convnet5x5, fastcnn, fastcnn_deep
from .layers import Normalize
from .resnet import resnet18, resnet18_fastai


def flat(*layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), *layers)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": lambda n_classes=10: flat(nn.Linear(28 * 28, n_classes)),
    "simple_net": lambda n_classes=10: flat(nn.Linear(28 * 28, 30), nn.ReLU(), nn.Linear(30, n_classes)),
    "mlp": lambda n_classes=10: nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(784, 256), nn.ReLU(),
                                              nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, n_classes)),
    "cnn": lambda n_classes=10: cnn(n_classes),
    "fastcnn": lambda n_classes=10: fastcnn(n_classes),          # the default recipe's model: speed on 2 CPU cores
    "fastcnn_wide": lambda n_classes=10: fastcnn(n_classes, 64),  # the same, 4x the compute: the best recipe
    "fastcnn_small": lambda n_classes=10: fastcnn(n_classes, 24),  # about 0.6x the compute: fp32 CPUs' speedrun
    "fastcnn_deep": lambda n_classes=10: fastcnn_deep(n_classes),  # two convs per size: for GPU accuracy runs
    "convnet5x5": lambda n_classes=10: convnet5x5(n_classes),    # no pooling: a different member for ensembles
    "resnet18": lambda n_classes=10: resnet18(n_classes),        # the chapter's last stage (SGD version)
    "resnet18_fastai": lambda n_classes=10: resnet18_fastai(n_classes),  # fastai's cnn_learner(resnet18) model
}


def register(name: str, builder: Callable[..., nn.Module]) -> None:
    """Add a model builder taking `n_classes`."""
    MODELS[name] = builder


def build_model(name: str, n_classes: int = 10) -> nn.Module:
    """Build a registered model with `n_classes` outputs."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}.")
    return MODELS[name](n_classes=n_classes)
