"""What each channel responds to: the validation patches that excite it most (Zeiler & Fergus).

Zeiler and Fergus ("Visualizing and Understanding Convolutional Networks", ECCV 2014) showed, for
a unit, the nine image patches that excite it most. We do the same without their deconvnet: a
unit's patch is the part of the image it can see (its receptive field), so the patches grow with
depth: 3 x 3 pixels in layer 1, the whole image at the top. What the patches show is a look, not a
measurement: whether a unit detects edges, parts or objects is measured by ``insight.dissection``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from layerscope.insight import render
from layerscope.insight.base import Context, EpochView
from layerscope.insight.capture import LayerAnatomy, LayerStats
from layerscope.models.layers import layer_tag


def crop(image: torch.Tensor, anatomy: LayerAnatomy, position: int, width: int) -> torch.Tensor:
    """The receptive field of the unit at flat ``position`` of a ``width``-wide map, grey outside."""
    field = anatomy.receptive_field
    size = image.shape[-1]
    if len(anatomy.output_shape) != 3:  # a fully connected layer sees the whole image
        return image
    row, col = divmod(position, width)
    top = round(anatomy.start + row * anatomy.jump - (field - 1) / 2)
    left = round(anatomy.start + col * anatomy.jump - (field - 1) / 2)
    padded = F.pad(image, (field, field, field, field), value=render.BORDER)
    top, left = top + field, left + field
    return padded[:, top : top + field, left : left + field][:, :, :size][:, :size]


def display_size(field: int, zoom: int, smallest: int = 24) -> int:
    """Patches are magnified ``zoom`` times, and tiny ones (layer 1's 3 pixels) up to ``smallest``."""
    return max(field * zoom, field * math.ceil(smallest / field))


def top_images(stats: LayerStats, channels: torch.Tensor, k: int) -> torch.Tensor:
    """For each chosen channel, the indices of the ``k`` images that excite it most: (channels, k)."""
    return stats.peak[:, channels].topk(min(k, len(stats.peak)), dim=0).indices.T


def channel_patches(
    images: torch.Tensor, anatomy: LayerAnatomy, stats: LayerStats, channel: int, best: torch.Tensor
) -> torch.Tensor:
    """The patches where ``channel`` peaks in each of the images ``best``: (len(best), 3, field, field)."""
    return torch.stack([crop(images[i], anatomy, int(stats.peak_at[i, channel]), stats.width) for i in best])


def selective_channels(stats: LayerStats, count: int) -> torch.Tensor:
    """The channels whose peak response varies most across images: they pick out something."""
    spread = stats.peak.std(dim=0) if len(stats.peak) > 1 else stats.peak[0]
    return spread.topk(min(count, spread.numel())).indices.sort().values


class ChosenChannels:
    """Each layer's ``count`` most selective channels, chosen at its first look and kept after, so
    that a view follows the same channels through training."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._chosen: dict[int, torch.Tensor] = {}

    def __call__(self, index: int, stats: LayerStats) -> torch.Tensor:
        """The channels of layer ``index`` (its statistics ``stats`` choose them the first time)."""
        if index not in self._chosen:
            self._chosen[index] = selective_channels(stats, self.count)
        return self._chosen[index]


class TopPatches(EpochView):
    """``top_patches/NN_<layer>``: a row per channel, its ``k`` strongest validation patches.

    The channels shown are chosen once per run (the most selective ones at the first drawing) so
    that each row follows the same channel through training.
    """

    def __init__(
        self, every_n_epochs: int = 1, channels: int = 4, k: int = 9, sample_size: int = 2000,
        zoom: int = 3,
    ) -> None:
        super().__init__(every_n_epochs)
        self.sample_size, self.channels, self.k, self.zoom = sample_size, channels, k, zoom
        self.chosen = ChosenChannels(channels)

    def draw(self, context: Context) -> None:
        sample, layers = context.sample(self.sample_size), context.anatomy()
        images = render.display_images(sample.images)
        for index, (anatomy, stats) in enumerate(zip(layers, sample.stats, strict=True)):
            rows = []
            chosen = self.chosen(index, stats)
            for channel, best in zip(chosen, top_images(stats, chosen, self.k), strict=True):
                patches = channel_patches(images, anatomy, stats, int(channel), best)
                rows.append(render.resize(patches, display_size(patches.shape[-1], self.zoom)))
            tag = f"top_patches/{layer_tag(index, anatomy.name)}"
            render.log_image(context.writer, tag, render.grid(rows), context.step)
