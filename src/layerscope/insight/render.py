"""Turning tensors into pictures: contrast-scaled tiles, nearest-neighbour zoom, grids, figures."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure

BORDER = 0.25  # grey between tiles, so black tiles (silent channels) stay visible


def stretch(tiles: torch.Tensor) -> torch.Tensor:
    """Scale each tile (the leading dimension) to [0, 1]; a constant tile becomes black."""
    flat = tiles.float().flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return scaled.view_as(tiles)


def stretch_signed(tiles: torch.Tensor) -> torch.Tensor:
    """Scale each tile so that 0 is mid-grey and its largest magnitude is black or white."""
    flat = tiles.float().flatten(1)
    peak = flat.abs().max(dim=1, keepdim=True).values.clamp_min(1e-12)
    return (0.5 + 0.5 * flat / peak).view_as(tiles)


def resize(tiles: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, size, size) with nearest neighbours: every unit stays a sharp square."""
    if tiles.shape[-1] == size and tiles.shape[-2] == size:
        return tiles
    return F.interpolate(tiles.float(), size=(size, size), mode="nearest")


def as_rgb(tiles: torch.Tensor) -> torch.Tensor:
    """(N, 1 or 3, H, W) -> (N, 3, H, W)."""
    return tiles.expand(-1, 3, -1, -1) if tiles.shape[1] == 1 else tiles


def mosaic(vectors: torch.Tensor) -> torch.Tensor:
    """(N, D) neuron values -> (N, 1, s, s) squares, one pixel per neuron (the rest black)."""
    count, units = vectors.shape
    side = math.ceil(math.sqrt(units))
    padded = torch.zeros(count, side * side)
    padded[:, :units] = stretch(vectors)
    return padded.view(count, 1, side, side)


def grid(rows: list[torch.Tensor], pad: int = 2, row_gap: int | None = None) -> torch.Tensor:
    """Lay out rows of (n_i, 3, H, W) tiles (same H, W) into one (3, height, width) picture.

    ``row_gap`` (default ``pad``) is the space below each row, e.g. room for captions.
    """
    gap = pad if row_gap is None else row_gap
    height, width = rows[0].shape[-2:]
    cols = max(len(row) for row in rows)
    blank = torch.full((3, height, width), BORDER)
    tiles = torch.stack([torch.cat([row, blank.expand(cols - len(row), -1, -1, -1)]) for row in rows])
    # Each tile gets its right-hand pad and the gap below it; the canvas gets the top-left pad.
    tiles = F.pad(tiles, (0, pad, 0, gap), value=BORDER)  # (rows, cols, 3, H + gap, W + pad)
    canvas = tiles.permute(2, 0, 3, 1, 4).reshape(3, len(rows) * (height + gap), cols * (width + pad))
    return F.pad(canvas, (pad, 0, pad, 0), value=BORDER).clamp(0, 1)


def tile_grid(tiles: torch.Tensor, cols: int, pad: int = 2) -> torch.Tensor:
    """(N, 3, H, W) tiles into rows of ``cols`` -> (3, height, width)."""
    return grid([tiles[i : i + cols] for i in range(0, len(tiles), cols)], pad)


def display_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) as stored -> float RGB in [0, 1] for display."""
    return as_rgb(images.float() / 255.0)


def new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure outside pyplot: no GUI backend is touched, from a training process or a notebook."""
    figure = Figure(figsize=(width, height), dpi=100)
    return figure, figure.subplots()
