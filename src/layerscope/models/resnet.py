"""The CIFAR-style residual network of He et al. and its "plain" twin without shortcuts.

He, Zhang, Ren, Sun: "Deep Residual Learning for Image Recognition", CVPR 2016, section 4.2.
A 3x3 convolution, then three stages of ``n`` blocks with 16, 32 and 64 channels (each block is
two 3x3 convolutions), global average pooling and one fully connected layer:
``depth = 6n + 2`` weighted layers. Stages two and three halve the resolution in their first
block. Shortcuts are the paper's option A (identity, zero-padded where the width doubles), which
adds no parameters: depth 20 has about 0.27 M.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from layerscope.errors import UserError
from layerscope.registry import MODELS

STAGE_WIDTHS = (16, 32, 64)


def blocks_per_stage(depth: int) -> int:
    """Return ``n`` for ``depth = 6n + 2``, or raise a UserError listing valid depths."""
    if depth < 8 or (depth - 2) % 6 != 0:
        raise UserError(
            f"model.depth={depth} is not a valid depth: it must be 6n+2 "
            "(8, 14, 20, 32, 44, 56, 110, ...)"
        )
    return (depth - 2) // 6


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by ``stride`` and zero-pad the new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            # Pad the channel dimension: (W left, W right, H top, H bottom, C front, C back).
            half = self.extra_channels // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))
        return x


ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def activation_layer(name: str) -> nn.Module:
    """The activation called ``name``; ReLU unless an ablation asks for the older ones."""
    if name not in ACTIVATIONS:
        raise UserError(f"model.activation={name} is not known: choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def norm_layer(channels: int, batch_norm: bool) -> nn.Module:
    """BatchNorm, or nothing at all for the ablation that shows what BatchNorm is for."""
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; ``relu1`` and ``relu2`` are the two layers' outputs.

    With ``residual=False`` the block is He et al.'s plain baseline: the same layers, no shortcut.
    ``activation`` and ``batch_norm`` exist for ablations (the modules keep their ``relu`` names).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, residual: bool,
        activation: str = "relu", batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=not batch_norm)
        self.bn1 = norm_layer(out_channels, batch_norm)
        self.relu1 = activation_layer(activation)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=not batch_norm)
        self.bn2 = norm_layer(out_channels, batch_norm)
        self.relu2 = activation_layer(activation)
        self.shortcut = PadShortcut(in_channels, out_channels, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu2(out)


class CifarResNet(nn.Module):
    """He et al.'s CIFAR network: ``residual=True`` is ResNet-``depth``, False its plain twin."""

    def __init__(
        self,
        depth: int = 20,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        residual: bool = True,
        activation: str = "relu",
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        n = blocks_per_stage(depth)
        if image_size < 8:
            raise UserError(f"data.image_size={image_size} is too small: ResNets need 8 or more")
        self.depth = depth
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, STAGE_WIDTHS[0], 3, 1, 1, bias=not batch_norm),
            norm_layer(STAGE_WIDTHS[0], batch_norm),
            activation_layer(activation),
        )
        stages = []
        width = STAGE_WIDTHS[0]
        for index, out_width in enumerate(STAGE_WIDTHS):
            blocks = []
            for block in range(n):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(width, out_width, stride, residual, activation, batch_norm))
                width = out_width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialisation for ReLU networks, as in the paper.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        """The ``depth`` weighted layers, input side first; each entry's output is that layer's."""
        layers: list[tuple[str, nn.Module]] = [("stem", self.stem[2])]
        for s, stage in enumerate(self.stages, start=1):
            for b, block in enumerate(stage, start=1):
                layers.append((f"stage{s}.block{b}.conv1", block.relu1))
                layers.append((f"stage{s}.block{b}.conv2", block.relu2))
        layers.append(("fc", self.fc))
        return layers


@MODELS.register("deep", formerly=("layerscope.models.resnet",))
def cifar_resnet(
    depth: int = 20, in_channels: int = 3, num_classes: int = 10, image_size: int = 32,
    activation: str = "relu", batch_norm: bool = True,
) -> CifarResNet:
    """ResNet-``depth`` for small images (He et al. 2016, section 4.2): ``model=deep``."""
    return CifarResNet(depth, in_channels, num_classes, image_size, True, activation, batch_norm)


@MODELS.register("plain", formerly=("layerscope.models.plain",))
def cifar_plain(
    depth: int = 20, in_channels: int = 3, num_classes: int = 10, image_size: int = 32,
    activation: str = "relu", batch_norm: bool = True,
) -> CifarResNet:
    """The same network without shortcuts (He et al.'s plain baseline): ``model=plain``."""
    return CifarResNet(depth, in_channels, num_classes, image_size, False, activation, batch_norm)
