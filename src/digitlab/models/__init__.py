"""Models: the chapter's by-hand models, and image models by name (`build_model(name, n_classes)`)."""

from .cnn import cnn
from .fastcnn import fastcnn
from .layers import Normalize, init_weights, n_params
from .linear import Linear1, init_params, linear_model
from .mlp import SimpleNetByHand, simple_net
from .registry import MODELS, build_model, register
from .resnet import BasicBlock, ResNet, resnet18

__all__ = ["cnn", "fastcnn", "BasicBlock", "ResNet", "resnet18", "Normalize", "init_weights", "n_params", "Linear1",
           "init_params", "linear_model", "SimpleNetByHand", "simple_net", "MODELS", "build_model", "register"]
