"""A small convolutional network: a few conv-BN-ReLU-pool layers and a linear classifier.

The classic LeNet-style layout (LeCun et al. 1998), widened and with BatchNorm: deep enough to
learn edges and simple parts, shallow enough to train in seconds.
"""

from __future__ import annotations

import torch
from torch import nn

from layerscope.errors import UserError
from layerscope.registry import MODELS


@MODELS.register("shallow")
class ShallowCNN(nn.Module):
    """``len(channels)`` conv layers (each halving the resolution) and one linear layer."""

    def __init__(
        self,
        channels: tuple[int, ...] | list[int] = (32, 64, 128),
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        if not 2 <= len(channels) <= 4:
            raise UserError(f"model.channels={list(channels)} must list 2 to 4 layer widths")
        if image_size // 2 ** len(channels) < 1:
            raise UserError(
                f"data.image_size={image_size} is too small for {len(channels)} pooling layers"
            )
        self.convs = nn.ModuleList()
        width = in_channels
        for out_width in channels:
            self.convs.append(
                nn.Sequential(
                    nn.Conv2d(width, out_width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out_width),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                )
            )
            width = out_width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        return self.fc(torch.flatten(self.pool(x), 1))

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        """Each conv layer's ReLU (its output before pooling), then the classifier."""
        layers = [(f"conv{i}", conv[2]) for i, conv in enumerate(self.convs, start=1)]
        return [*layers, ("fc", self.fc)]
