"""Concepts that every image has, computed from its pixels: edges, colours and (where a data set
defines its background) each class's silhouette. Network dissection scores units against them on
data without masks of its own; on data with masks (``shapes``) they add the kinds those lack.

- **Edges**: Canny's detector (scikit-image's ``feature.canny``) on the image's grey intensity in
  [0, 1] (the mean of its channels), smoothed by a Gaussian of ``EDGE_SIGMA`` pixels, with hysteresis
  thresholds ``EDGE_LOW`` and ``EDGE_HIGH`` on the smoothed gradient's magnitude: one pixel wide after
  its non-maximum suppression, as the part edges of ``shapes`` are.
- **Colours** (colour images only): the eleven basic colour terms that Broden uses (Bau et al.
  2017). Broden names each pixel with van de Weijer et al.'s learned colour-name table (2009), which
  is not shipped here; instead each pixel takes the name of the nearest of the reference colours in
  :data:`COLOURS` in CIELAB (Euclidean distance, CIE 1976), so every pixel has exactly one colour.
- **Silhouettes**: where a source knows its background (MNIST and Fashion-MNIST: exactly 0), the
  pixels that are not background, one concept per class (the silhouette of the images of that
  class), as ``shapes`` defines its objects. They are a foreground, not a segmentation: a unit that
  covers them covers the object and anything drawn on it.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2lab
from skimage.feature import canny

from layerscope.data.base import ConceptMasks

EDGE_SIGMA = 1.0  # pixels: the Gaussian smoothing before the gradient (skimage's default)
EDGE_LOW, EDGE_HIGH = 0.1, 0.2  # hysteresis thresholds on the gradient magnitude of [0, 1] intensities
# The eleven basic colour terms (Berlin and Kay), each at a typical sRGB value of the colour it names.
COLOURS = {
    "black": (0, 0, 0), "blue": (30, 60, 200), "brown": (130, 80, 35), "grey": (128, 128, 128),
    "green": (40, 160, 50), "orange": (245, 140, 20), "pink": (245, 160, 190), "purple": (130, 45, 160),
    "red": (210, 30, 30), "white": (255, 255, 255), "yellow": (245, 225, 35),
}
COMPUTED_KINDS = ("edge", "colour", "object")  # the kinds of concept computed here
SOURCE = "image"  # the label group of the computed concepts (a unit gets one label per group)


def intensity_edges(images: torch.Tensor) -> torch.Tensor:
    """bool (N, H, W): Canny edges of uint8 images (N, C, H, W) on their grey intensity."""
    grey = images.float().mean(dim=1).div(255).numpy()
    edges = [canny(image, sigma=EDGE_SIGMA, low_threshold=EDGE_LOW, high_threshold=EDGE_HIGH)
             for image in grey]
    return torch.from_numpy(np.stack(edges)) if edges else torch.zeros(grey.shape, dtype=torch.bool)


def colour_masks(images: torch.Tensor) -> torch.Tensor:
    """bool (N, len(COLOURS), H, W): each pixel of uint8 RGB images under its nearest colour name."""
    pixels = images.permute(0, 2, 3, 1).numpy().astype(np.float64) / 255  # (N, H, W, 3)
    lab = rgb2lab(pixels) if len(pixels) else np.zeros(pixels.shape)
    references = rgb2lab(np.array(list(COLOURS.values()), dtype=np.float64)[None] / 255)[0]  # (K, 3)
    distance = ((lab[..., None, :] - references) ** 2).sum(axis=-1)  # (N, H, W, K)
    nearest = torch.from_numpy(distance.argmin(axis=-1))
    return torch.stack([nearest == k for k in range(len(COLOURS))], dim=1)


def silhouettes(foreground: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """bool (N, classes, H, W): each image's foreground under its own class, empty under the others."""
    return torch.stack([foreground & (labels == c)[:, None, None] for c in range(classes)], dim=1)


def image_concepts(
    images: torch.Tensor, labels: torch.Tensor, classes: list[str], foreground: torch.Tensor | None,
    lacking: set[str],
) -> ConceptMasks | None:
    """The computed concepts of the kinds in ``lacking`` ("edge", "colour", "object") for uint8 images.

    Colours only for RGB images, silhouettes only where the ``foreground`` (bool (N, H, W)) is known;
    None where none of the kinds can be computed.
    """
    names: list[str] = []
    kinds: list[str] = []
    masks: list[torch.Tensor] = []
    if "edge" in lacking:
        names.append("edge")
        kinds.append("edge")
        masks.append(intensity_edges(images)[:, None])
    if "colour" in lacking and images.shape[1] == 3:
        names += list(COLOURS)
        kinds += ["colour"] * len(COLOURS)
        masks.append(colour_masks(images))
    if "object" in lacking and foreground is not None:
        names += [f"{name} silhouette" for name in classes]
        kinds += ["object"] * len(classes)
        masks.append(silhouettes(foreground, labels, len(classes)))
    if not masks:
        return None
    return ConceptMasks(names, kinds, torch.cat(masks, dim=1), sources=[SOURCE] * len(names))
