"""Turning tensors into pictures: contrast-scaled tiles, nearest-neighbour zoom, grids, figures.

Pictures go to TensorBoard through :func:`log_image` and :func:`log_figure` rather than the
writer's ``add_image``/``add_figure``: those encode PNG at zlib's default level 6, which on the
views' pictures is about three times slower than level 1 and, on the feature-map grids that make
most of the event file, no smaller (measured on the default run's pictures: 35 ms and 217 KB
against 11 ms and 196 KB for one grid).
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

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


def png_bytes(picture: np.ndarray) -> bytes:
    """uint8 (H, W, 3 or 4) -> PNG, at the fast compression level (see the module's note)."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def as_pixels(picture: torch.Tensor | np.ndarray) -> np.ndarray:
    """A (3, H, W) float picture in [0, 1], or uint8 (H, W, C) pixels, as uint8 (H, W, C)."""
    if isinstance(picture, np.ndarray):
        return picture
    return (picture.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def log_image(writer: SummaryWriter, tag: str, picture: torch.Tensor | np.ndarray, step: int) -> None:
    """Log one picture ((3, H, W) float in [0, 1], or uint8 (H, W, C)) under IMAGES ``tag``."""
    pixels = as_pixels(picture)
    height, width, channels = pixels.shape
    image = Summary.Image(
        height=height, width=width, colorspace=channels, encoded_image_string=png_bytes(pixels)
    )
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


@functools.lru_cache(maxsize=8)
def _font(pixels: int) -> ImageFont.FreeTypeFont:
    """Matplotlib's own sans-serif font (it ships with matplotlib), ``pixels`` high."""
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), pixels)


def captioned(
    picture: torch.Tensor, captions: list[tuple[int, str]], title: str, margin: int, text_pixels: int = 11,
) -> np.ndarray:
    """``picture`` (3, H, W) in [0, 1] under a ``title``, with a white ``margin`` on its left holding
    ``captions`` (each centred on its row ``y`` of the picture), as uint8 pixels (H', W', 3).

    Drawn by Pillow, not matplotlib: for pictures shown pixel for pixel that only need text beside
    them, about a tenth of the time of a figure with tick labels.
    """
    font, title_font = _font(text_pixels), _font(text_pixels + 2)
    top = 2 * (text_pixels + 2)
    pixels = as_pixels(picture)
    canvas = Image.new("RGB", (margin + pixels.shape[1], top + pixels.shape[0]), "white")
    canvas.paste(Image.fromarray(pixels), (margin, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((canvas.width // 2, top // 2), title, fill="black", font=title_font, anchor="mm")
    for y, text in captions:
        draw.text((margin - 6, top + y), text, fill="black", font=font, anchor="rm")
    return np.asarray(canvas)


def figure_pixels(figure: Figure) -> np.ndarray:
    """A figure drawn to uint8 RGB pixels (H, W, 3)."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


_MARGINS = ("left", "right", "bottom", "top", "wspace", "hspace")


class Margins:
    """Tight margins for a chart's labels, measured on its first drawing in a run and reused after.

    ``tight_layout`` draws every label once to measure it, which costs about as much as drawing the
    chart. A chart drawn every epoch keeps its size and its axis labels (only the values and the
    epoch in the title change), so its margins are measured once per run: one ``Margins`` per run.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, float, float], dict[str, float]] = {}  # (tag, size) -> margins

    def fit(self, tag: str, figure: Figure) -> None:
        width, height = figure.get_size_inches()
        key = (tag, round(float(width), 3), round(float(height), 3))
        if key in self._known:
            figure.subplots_adjust(**self._known[key])
            return
        figure.tight_layout()
        params = figure.subplotpars
        self._known[key] = {name: getattr(params, name) for name in _MARGINS}


def log_figure(
    writer: SummaryWriter, tag: str, figure: Figure, step: int, margins: Margins | None = None
) -> None:
    """Log a matplotlib figure under IMAGES ``tag``, its margins fitted to its labels (measured again
    each time unless the run's ``margins`` know them)."""
    (margins or Margins()).fit(tag, figure)
    log_image(writer, tag, figure_pixels(figure), step)
