"""A wide, short residual network for training to high accuracy in little time: ``model=fast``.

The pattern of David Page's "ResNet-9" (DAWNBench, 2018; "How to train your ResNet"): few
layers, many channels, max-pooling between stages and a residual block in the middle stages.
Wide convolutions on small images use the CPU's or GPU's arithmetic far better than the
16-channel layers of He et al.'s ResNet-20, so this network, with almost three times the
parameters (0.76 M against 0.27 M), trains at about the same speed or faster. Layout for a
28x28 image with the default widths:

    stem      2 convs 32 (28x28), then max-pool        -> 14x14
    stage 1   conv 64,  residual block of 2 convs 64   -> max-pool -> 7x7
    stage 2   conv 128, residual block of 2 convs 128  -> max-pool -> 3x3
    head      conv 256, global average pool, fully connected

Ten weighted layers; ``stem_layers=1`` drops the second full-resolution conv (9 layers, about
1.2x faster per image, but on Fashion-MNIST it ended 0.6 points lower at equal time). The
residual blocks are ResNet's own (``resnet.BasicBlock``: conv-BN-ReLU-conv-BN, plus the input,
then ReLU).
"""

from __future__ import annotations

import torch
from torch import nn

from layerscope.errors import UserError
from layerscope.models.resnet import BasicBlock
from layerscope.registry import MODELS


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """A 3x3 convolution (no bias: BatchNorm adds one), BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


@MODELS.register("fast")
class FastResNet(nn.Module):
    """``stem_layers`` convs, two stages of conv + residual block, a head conv and a classifier."""

    def __init__(
        self,
        widths: tuple[int, ...] | list[int] = (32, 64, 128, 256),
        stem_layers: int = 2,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        if len(widths) != 4 or min(widths) < 1:
            raise UserError(
                f"model.widths={list(widths)} must list 4 positive widths: stem, stage 1, stage 2, head"
            )
        if stem_layers not in (1, 2):
            raise UserError(f"model.stem_layers={stem_layers} must be 1 or 2")
        if image_size < 8:
            raise UserError(f"data.image_size={image_size} is too small: model=fast needs 8 or more")
        stem, first, second, head = widths
        self.stem = nn.Sequential(*(conv_bn_relu(in_channels if i == 0 else stem, stem)
                                    for i in range(stem_layers)))
        self.stages = nn.ModuleList(
            nn.ModuleDict({"conv": conv_bn_relu(width_in, width), "block": BasicBlock(width, width, 1, True)})
            for width_in, width in ((stem, first), (first, second))
        )
        self.pool = nn.MaxPool2d(2)
        self.head = conv_bn_relu(second, head)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(head, num_classes)
        for module in self.modules():  # He initialisation, as in resnet.py
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        for stage in self.stages:
            x = self.pool(stage["block"](stage["conv"](x)))
        x = self.head(x)
        return self.fc(torch.flatten(self.global_pool(x), 1))

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        """Every weighted layer, input side first: each conv's ReLU output, then the classifier."""
        layers = [(f"stem.conv{i}", unit[2]) for i, unit in enumerate(self.stem, start=1)]
        for s, stage in enumerate(self.stages, start=1):
            layers.append((f"stage{s}.conv", stage["conv"][2]))
            layers.append((f"stage{s}.block.conv1", stage["block"].relu1))
            layers.append((f"stage{s}.block.conv2", stage["block"].relu2))
        return [*layers, ("head.conv", self.head[2]), ("fc", self.fc)]
