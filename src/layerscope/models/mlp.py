"""The first picture of a neural network: input -> hidden layers of neurons -> output.

Every pixel is an input neuron; every connection has a weight and every neuron a bias
(``nn.Linear``); hidden neurons apply ReLU. No convolutions: compare what it reaches with the CNNs.
"""

from __future__ import annotations

import torch
from torch import nn

from layerscope.errors import UserError
from layerscope.registry import MODELS


@MODELS.register("mlp")
class MLP(nn.Module):
    """A fully connected network with one ``nn.Linear`` + ReLU per hidden layer."""

    def __init__(
        self,
        hidden: tuple[int, ...] | list[int] = (512, 256),
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        if not hidden or min(hidden) < 1:
            raise UserError(f"model.hidden={list(hidden)} must list one or more positive widths")
        self.hidden = nn.ModuleList()
        width = in_channels * image_size * image_size
        for out_width in hidden:
            self.hidden.append(nn.Sequential(nn.Linear(width, out_width), nn.ReLU()))
            width = out_width
        self.output = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        for layer in self.hidden:
            x = layer(x)
        return self.output(x)

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        """Each hidden layer's ReLU output, then the output layer."""
        layers = [(f"hidden{i}", layer[1]) for i, layer in enumerate(self.hidden, start=1)]
        return [*layers, ("output", self.output)]
