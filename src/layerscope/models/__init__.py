"""Model families. Each exposes ``named_layers()``: the layers a learner counts, input side first.

The built-in networks list theirs in their own code; torchvision and timm networks are wrapped by
``adapted``, which derives the list from a forward pass.
"""

from typing import Any

from torch import nn

from layerscope.models.adapted import timm_classifier, torchvision_classifier
from layerscope.models.fast import FastResNet
from layerscope.models.flops import training_flops_per_image
from layerscope.models.mlp import MLP
from layerscope.models.resnet import CifarResNet, cifar_plain, cifar_resnet
from layerscope.models.shallow import ShallowCNN

__all__ = ["MLP", "CifarResNet", "FastResNet", "ShallowCNN", "build_model", "cifar_plain", "cifar_resnet",
           "timm_classifier", "torchvision_classifier", "training_flops_per_image"]


def build_model(model_config: dict[str, Any]) -> nn.Module:
    """Build a model from its resolved config (a plain dict with ``_target_``, as checkpoints keep it)."""
    from hydra.utils import instantiate  # imported here: predicting from a checkpoint needs no Hydra start-up

    return instantiate(model_config)
