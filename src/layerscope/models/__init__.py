"""Model families. Each exposes ``named_layers()``: the layers a learner counts, input side first."""

from layerscope.models.mlp import MLP
from layerscope.models.resnet import CifarResNet, plain, resnet
from layerscope.models.shallow import ShallowCNN

__all__ = ["MLP", "CifarResNet", "ShallowCNN", "plain", "resnet"]
