"""Layer-1 filters: the weights of the first layer drawn as pictures (edge and colour detectors)."""

from __future__ import annotations

import torch
from torch import nn

from layerscope.insight import render
from layerscope.insight.base import Context, EpochView


def first_layer_weight(model: nn.Module, in_channels: int, image_size: int) -> torch.Tensor:
    """The first layer's weights as (filters, channels, k, k) pictures.

    A convolution's kernels are pictures already; a fully connected first layer (``mlp``) has one
    weight per input pixel per neuron, so each neuron's weights are a whole-image template.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().float().cpu()
        if isinstance(module, nn.Linear):
            weight = module.weight.detach().float().cpu()
            return weight.view(-1, in_channels, image_size, image_size)
    raise TypeError(f"{type(model).__name__} has no convolution or linear layer to draw")


class LayerFilters(EpochView):
    """``filters/layer1``: each of the first ``max_filters`` filters as a tile, grey = 0."""

    def __init__(self, every_n_epochs: int = 1, max_filters: int = 64, tile_size: int = 24) -> None:
        super().__init__(every_n_epochs)
        self.max_filters = max_filters
        self.tile_size = tile_size

    def draw(self, context: Context) -> None:
        info = context.data.info
        weight = first_layer_weight(context.model, info["in_channels"], info["image_size"])
        weight = weight[: self.max_filters]
        # Each filter scaled on its own, keeping the sign: mid-grey is a zero weight.
        tiles = render.stretch_signed(weight)
        tiles = render.as_rgb(render.resize(tiles, max(self.tile_size, weight.shape[-1])))
        columns = 8 if len(tiles) > 16 else 4
        render.log_image(context.writer, "filters/layer1", render.tile_grid(tiles, columns), context.step)
