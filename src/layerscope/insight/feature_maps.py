"""Feature maps: what every layer makes of the same few images, epoch after epoch."""

from __future__ import annotations

import torch

from layerscope.insight import render
from layerscope.insight.base import Context, EpochView
from layerscope.insight.capture import forward_batches
from layerscope.models.layers import inspection_mode, layer_hooks, layer_tag, named_layers


def probe_indices(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """The first ``per_class`` images of each class, class by class: the same images every epoch."""
    chosen = [torch.nonzero(labels == c).flatten()[:per_class] for c in torch.unique(labels).tolist()]
    return torch.cat(chosen)


class FeatureMaps(EpochView):
    """One grid per named layer, ``feature_maps/NN_<layer>``: a row per probe image, the image
    itself first, then the layer's first ``max_channels`` channels, each tile contrast-stretched.
    Fully connected layers show each row's neurons as one square, a pixel per neuron."""

    def __init__(self, every_n_epochs: int = 1, images_per_class: int = 1, max_channels: int = 16) -> None:
        super().__init__(every_n_epochs)
        self.images_per_class = images_per_class
        self.max_channels = max_channels

    def draw(self, context: Context) -> None:
        val, model = context.data.val, context.model
        images = val.images[probe_indices(val.labels, self.images_per_class)]
        layers = named_layers(model)
        outputs: dict[int, torch.Tensor] = {}

        def keep(index: int, output: torch.Tensor) -> None:
            outputs[index] = output[:, : self.max_channels].float().cpu()

        with inspection_mode(model), layer_hooks(layers, keep):
            forward_batches(context.forward(), images, 256)
        size = images.shape[-1]
        originals = render.display_images(images)
        for index, (name, _) in enumerate(layers):
            picture = feature_map_grid(originals, outputs[index], size)
            render.log_image(context.writer, f"feature_maps/{layer_tag(index, name)}", picture, context.step)


def feature_map_grid(originals: torch.Tensor, output: torch.Tensor, size: int) -> torch.Tensor:
    """Rows of [image, channel 1, channel 2, ...] as one (3, H, W) picture."""
    if output.dim() == 4:
        count, channels = output.shape[:2]
        tiles = render.stretch(output.flatten(0, 1)).unsqueeze(1)
        tiles = render.as_rgb(render.resize(tiles, size)).view(count, channels, 3, size, size)
    else:
        tiles = render.as_rgb(render.resize(render.mosaic(output), size)).unsqueeze(1)
    rows = [torch.cat([originals[i : i + 1], tiles[i]]) for i in range(len(originals))]
    return render.grid(rows)
