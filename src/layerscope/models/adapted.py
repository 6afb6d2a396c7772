"""Any torchvision or timm classification network, with the layer list every view reads.

``model=torchvision model.arch=resnet18`` and ``model=timm model.arch=convnext_atto`` build the
library's network for this data set's classes (the classifier head made anew; every other layer
from ``model.weights`` where given), wrapped so it answers ``named_layers()`` like the built-in
models: its convolutions and flat linear layers in forward order (``derived.derive_layers``), or an
even selection of ``model.layers`` of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
from torch import nn

from layerscope.errors import UserError
from layerscope.models import pretrained
from layerscope.models.derived import derive_layers, pick_layers
from layerscope.models.layers import Layer
from layerscope.registry import MODELS

log = logging.getLogger(__name__)
FREEZE = ("none", "backbone")


class AdaptedClassifier(nn.Module):
    """A library network in ``net``; ``named_layers()`` lists the layers the views look at.

    Grey images (``in_channels=1``) are repeated into three channels, so pretrained colour filters
    still apply. ReLUs run out of place: a hook that keeps a convolution's output must see the
    values it produced, not what an in-place activation later wrote over them.
    """

    def __init__(
        self, net: nn.Module, in_channels: int, image_size: int, layers: int | str,
        backbone_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.net = net
        self.in_channels = in_channels
        # Read by training.module.weight_decay_groups: the pretrained layers learn at this fraction of the lr.
        self.backbone_lr_scale = backbone_lr_scale
        for module in net.modules():
            if getattr(module, "inplace", False) is True:
                module.inplace = False
        every = derive_layers(self, torch.zeros(1, in_channels, image_size, image_size))
        self.layer_count = len(every)
        self._layer_names = [name for name, _ in pick_layers(every, layers)]
        self.head = every[-1][0].removeprefix("net.")  # the output layer, made for these classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)

    def named_layers(self) -> list[Layer]:
        modules = dict(self.named_modules())
        return [(name.removeprefix("net."), modules[name]) for name in self._layer_names]

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter but the classifier head's: what pretrained weights set."""
        for name, param in self.net.named_parameters():
            if not name.startswith(f"{self.head}."):
                yield param

    def describe(self, arch: str) -> str:
        """One line on the layer list: how many layers there are and which the views show."""
        shown = len(self._layer_names)
        which = ("all of them" if shown == self.layer_count
                 else f"{shown} of them, evenly spaced by depth (model.layers=all shows every one)")
        return f"{arch}: {self.layer_count} layers (convolutions and linear layers); the views show {which}"


def _finish(
    net: nn.Module, arch: str, in_channels: int, image_size: int, layers: int | str, freeze: str,
    backbone_lr_scale: float, state: dict[str, torch.Tensor] | None, source: str,
) -> AdaptedClassifier:
    if freeze not in FREEZE:
        raise UserError(f"model.freeze={freeze} must be one of {', '.join(FREEZE)}")
    if not 0 <= backbone_lr_scale <= 1:
        raise UserError(f"model.backbone_lr_scale={backbone_lr_scale} must be between 0 and 1")
    try:
        model = AdaptedClassifier(net, in_channels, image_size, layers, backbone_lr_scale)
    except (RuntimeError, AssertionError, ValueError) as err:  # it cannot take this image size
        raise UserError(f"model.arch={arch} cannot run on {image_size}x{image_size} images ({err}); "
                        "set data.image_size to a size it takes (224 always works)") from err
    if state is not None:
        pretrained.load_backbone(net, state, model.head, source)
    if freeze == "backbone":
        for param in model.backbone_parameters():
            param.requires_grad_(False)
    log.info(model.describe(arch))
    return model


@MODELS.register("torchvision")
def torchvision_classifier(
    arch: str, num_classes: int, in_channels: int = 3, image_size: int = 224, weights: str | None = None,
    freeze: str = "none", backbone_lr_scale: float = 1.0, layers: int | str = 16,
) -> AdaptedClassifier:
    """A classification network of ``torchvision.models`` (``model=torchvision``), by builder name."""
    from torchvision import models

    pretrained.check_torchvision_arch(arch)
    net = models.get_model(arch, weights=None, num_classes=num_classes)
    state, source = None, f"model.weights={weights}"
    if pretrained.is_path(weights):
        state = pretrained.read_state_dict(str(weights))
    elif weights is not None:
        state = pretrained.torchvision_state_dict(arch, weights)
    return _finish(net, arch, in_channels, image_size, layers, freeze, backbone_lr_scale, state, source)


@MODELS.register("timm")
def timm_classifier(
    arch: str, num_classes: int, in_channels: int = 3, image_size: int = 224, weights: str | None = None,
    freeze: str = "none", backbone_lr_scale: float = 1.0, layers: int | str = 16,
) -> AdaptedClassifier:
    """A network of ``timm`` (``model=timm``), by model name; pretrained weights through timm's hub code."""
    timm = pretrained.import_timm()
    pretrained.check_timm_arch(arch)
    state, source = None, f"model.weights={weights}"
    if weights is None or pretrained.is_path(weights):
        net = timm.create_model(arch, pretrained=False, num_classes=num_classes)
        state = pretrained.read_state_dict(weights) if weights is not None else None
    else:
        name = pretrained.timm_name(arch, weights)
        pretrained.timm_preprocessing(arch, weights)  # an unknown tag is one line, before any download
        try:
            net = timm.create_model(name, pretrained=True, num_classes=num_classes)
        except (OSError, RuntimeError) as err:  # hub errors without a network are OSErrors
            raise UserError(
                f"model.weights={weights}: timm could not fetch {name} ({type(err).__name__}); download it "
                "where there is a network (it goes to the Hugging Face cache, ~/.cache/huggingface) "
                "or pass model.weights=/path/to/state_dict.pth"
            ) from err
    return _finish(net, arch, in_channels, image_size, layers, freeze, backbone_lr_scale, state, source)


def weights_preprocessing(model_config: dict) -> pretrained.Preprocessing | None:
    """The preprocessing a model config's pretrained weights expect; None for random init or a file."""
    target, weights = model_config.get("_target_", ""), model_config.get("weights")
    if weights is None or pretrained.is_path(weights):
        return None
    if target.endswith("torchvision_classifier"):
        pretrained.check_torchvision_arch(model_config["arch"])
        return pretrained.torchvision_preprocessing(model_config["arch"], weights)
    if target.endswith("timm_classifier"):
        return pretrained.timm_preprocessing(model_config["arch"], weights)
    return None


def without_pretrained(model_config: dict) -> dict:
    """A copy of a stored model config that builds the same network without fetching its weights:
    a checkpoint's own weights replace them anyway."""
    return {**model_config, "weights": None} if "weights" in model_config else dict(model_config)
