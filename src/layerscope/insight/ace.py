"""Concepts discovered without labels: superpixels, each embedded where it lies, clustered.

Ghorbani, Wexler, Zou and Kim ("Towards Automatic Concept-based Explanations", NeurIPS 2019) find
the concepts a layer uses without any labelled masks:

1. segment each image into superpixels at a few scales (SLIC, Achanta et al. 2012; theirs 15, 50
   and 80 segments per image), dropping segments under 1 % of the image;
2. embed each segment at the layer;
3. cluster the embeddings (k-means, theirs 25 clusters) and keep each cluster's segments nearest
   its centre (theirs 40) as the concept's examples;
4. keep the coherent concepts: here those whose examples come from at least ``min_images``
   different images, so that a concept is something many images show, not one image's pieces.

Step 2 departs from the paper. ACE crops each segment's bounding box, fills the rest with grey and
resizes it to the network's input. At 32 pixels that blows a 5-pixel part up to a scale the network
never saw, and takes it out of the picture it belongs to: measured on a trained ``shapes`` network
(``benchmarks/concept_discovery.py``), clusters of such patches were no purer in part kinds or
classes than random sets of segments, at every depth, and patches cut out in place (not resized)
were no better. Here a segment's embedding is the layer's map of its own image, averaged over the
segment's pixels (each map cell weighted by the share of it the segment covers): the segment at its
scale and in its context, and one forward pass per image instead of one per segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import slic
from sklearn.cluster import KMeans

SCALES = (15, 50, 80)  # SLIC segments per image, the paper's three resolutions
COMPACTNESS = 20.0  # SLIC's colour-against-space weight, the paper's, on CIELAB (grey: L only)
MIN_SHARE = 0.01  # the smallest segment kept, as a share of the image's pixels (the paper's)


@dataclass
class Segments:
    """Superpixels of N images: which image each comes from and its pixels."""

    image: torch.Tensor  # int64 (S,): the index of each segment's image
    masks: torch.Tensor  # bool (S, H, W): the segment's pixels in its image
    scale: torch.Tensor  # int64 (S,): the SLIC resolution it came from (segments per image)

    def __len__(self) -> int:
        return len(self.image)


def superpixels(
    images: torch.Tensor, scales: tuple[int, ...] = SCALES, compactness: float = COMPACTNESS,
    min_share: float = MIN_SHARE,
) -> Segments:
    """SLIC superpixels of uint8 ``images`` (N, C, H, W) at each resolution of ``scales``.

    Colour images are segmented in CIELAB (scikit-image's default); grey ones on their intensity
    scaled to CIELAB's lightness range (0 to 100), so that one compactness means the same on both.
    """
    height, width = images.shape[-2:]
    smallest = max(1, round(min_share * height * width))
    found: list[tuple[int, np.ndarray, int]] = []
    for index, image in enumerate(images):
        if image.shape[0] == 3:
            pixels, channel_axis = image.permute(1, 2, 0).numpy(), -1
        else:
            pixels, channel_axis = image[0].numpy().astype(np.float64) * (100.0 / 255.0), None
        for scale in scales:
            labels = slic(pixels, n_segments=scale, compactness=compactness, sigma=1.0, start_label=0,
                          channel_axis=channel_axis)
            for label in np.unique(labels):
                mask = labels == label
                if mask.sum() >= smallest:
                    found.append((index, mask, scale))
    if not found:
        return Segments(torch.zeros(0, dtype=torch.long), torch.zeros(0, height, width, dtype=torch.bool),
                        torch.zeros(0, dtype=torch.long))
    return Segments(
        torch.tensor([i for i, _, _ in found]),
        torch.from_numpy(np.stack([m for _, m, _ in found])),
        torch.tensor([s for _, _, s in found]),
    )


def mean_weights(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float (S, h, w): each cell's weight in the mean of an h x w map over each (H, W) mask: the
    share of the cell the mask covers, scaled to sum to 1."""
    weights = F.adaptive_avg_pool2d(masks.float()[:, None], size)[:, 0]
    return weights / weights.flatten(1).sum(dim=1).clamp_min(1e-12)[:, None, None]


def pooled(maps: torch.Tensor, segments: Segments) -> torch.Tensor:
    """float (S, C): each segment's mean of its image's layer map ``maps`` (N, C, h, w) over its pixels."""
    weights = mean_weights(segments.masks, tuple(maps.shape[-2:]))
    embedded = torch.empty(len(segments), maps.shape[1])
    for index in segments.image.unique().tolist():
        rows = (segments.image == index).nonzero()[:, 0]
        embedded[rows] = torch.einsum("chw,shw->sc", maps[index].float(), weights[rows])
    return embedded


@dataclass
class Discovered:
    """One discovered concept: its example segments, nearest its cluster's centre first."""

    members: np.ndarray  # int64 (<= examples,): indices into the segments
    images: int  # how many different images its examples come from


def discover(
    embeddings: torch.Tensor, segments: Segments, clusters: int = 25, examples: int = 40,
    min_images: int = 10, seed: int = 0,
) -> list[Discovered]:
    """Cluster the segments' ``embeddings`` (S, C) with k-means and keep the coherent clusters.

    A cluster keeps its ``examples`` segments nearest its centre; it is a concept if they come from
    at least ``min_images`` images. Concepts are returned largest spread first (most images).
    """
    count = min(clusters, len(embeddings))
    if count < 1:
        return []
    points = embeddings.double().numpy()
    kmeans = KMeans(n_clusters=count, n_init=3, random_state=seed).fit(points)
    distances = kmeans.transform(points)
    image = segments.image.numpy()
    found = []
    for cluster in range(count):
        members = np.flatnonzero(kmeans.labels_ == cluster)
        members = members[np.argsort(distances[members, cluster], kind="stable")][:examples]
        spread = len(np.unique(image[members]))
        if spread >= min_images:
            found.append(Discovered(members, spread))
    return sorted(found, key=lambda c: -c.images)


def purity(labels: np.ndarray, members: np.ndarray) -> tuple[int, float]:
    """The most common of ``labels`` (one per segment) among ``members``, and the share it holds."""
    values, counts = np.unique(labels[members], return_counts=True)
    best = int(np.argmax(counts))
    return int(values[best]), float(counts[best] / len(members))


def chance_purity(labels: np.ndarray, size: int, draws: int = 200, seed: int = 0) -> float:
    """The mean :func:`purity` of ``draws`` random sets of ``size`` segments: what no concept scores."""
    generator = np.random.default_rng(seed)
    size = min(size, len(labels))
    return float(np.mean([purity(labels, generator.choice(len(labels), size, replace=False))[1]
                          for _ in range(draws)]))


def part_labels(segments: Segments, part_masks: torch.Tensor) -> np.ndarray:
    """Each segment's part kind: the index (1-based) of the part mask covering most of its pixels,
    or 0 (background) where part masks cover less than half of it. ``part_masks``: bool (N, P, H, W)."""
    labels = np.zeros(len(segments), dtype=np.int64)
    for row, (index, mask) in enumerate(zip(segments.image.tolist(), segments.masks, strict=True)):
        inside = part_masks[index][:, mask]  # (P, pixels of the segment)
        cover = inside.sum(dim=1)
        if 2 * int(inside.any(dim=0).sum()) >= int(mask.sum()):
            labels[row] = int(cover.argmax()) + 1
    return labels
