"""``shapes``: a procedural data set whose classes are built from shared parts.

Each image shows one object (a face, a house, a car, ...) made of primitive parts (circle, ring,
square, triangle, bar, dot, arc) at a random position, scale and rotation, in random colours on a
textured background; some images also hold stray parts beside the object. Every part is used by
at least two classes, so no single part names the class: a network has to detect parts (middle
layers) and then their arrangement (late layers). Every image carries its part labels, which the
layer probes use to measure where part information lives.

Rendering is vectorised: each part is a signed distance function evaluated on the pixel grid of
a whole batch at once and alpha-blended with an anti-aliased edge. Images are generated in chunks
with one seed each, so any prefix of the data set is the same whatever its total size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from layerscope.data.base import ImageSplits, LabelledImages
from layerscope.files import one_at_a_time, torch_bytes, write_atomically

FORMAT_VERSION = 2  # bump when the rendering changes, so stale caches are not reused
CHUNK = 1000  # images per independently seeded chunk
MAX_STRAYS = 3
STRAY_COUNT_WEIGHTS = torch.tensor([0.25, 0.35, 0.25, 0.15])  # P(0, 1, 2, 3 stray parts)

Sdf = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _length(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(x * x + y * y)


def _box(x: torch.Tensor, y: torch.Tensor, half_w: float, half_h: float) -> torch.Tensor:
    qx, qy = x.abs() - half_w, y.abs() - half_h
    return _length(qx.clamp(min=0), qy.clamp(min=0)) + torch.maximum(qx, qy).clamp(max=0)


def _disk(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _length(x, y) - 1.0


def _ring(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (_length(x, y) - 0.78).abs() - 0.22


def _square(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _box(x, y, 1.0, 1.0)


def _bar(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _box(x, y, 1.0, 0.24)


def _triangle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Equilateral, pointing up, centred on its centroid (the exact distance of Inigo Quilez).
    k = math.sqrt(3.0)
    x = x.abs() - 1.0
    y = y + 1.0 / k
    fold = (x + k * y) > 0
    x, y = torch.where(fold, (x - k * y) / 2, x), torch.where(fold, (-k * x - y) / 2, y)
    x = x - x.clamp(-2.0, 0.0)
    return -_length(x, y) * torch.sign(y)


def _arc(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # The lower half of a ring: a "U" (a smile, or an umbrella's canopy when turned over).
    return torch.maximum((_length(x, y) - 0.8).abs() - 0.2, y)


PARTS: dict[str, Sdf] = {
    "circle": _disk,
    "ring": _ring,
    "square": _square,
    "triangle": _triangle,
    "bar": _bar,
    "dot": _disk,
    "arc": _arc,
}
PART_NAMES = list(PARTS)

# Each class: parts as (name, x, y, size, rotation in degrees, drawn-inside-previous-part).
# Object coordinates span about [-1, 1], y up. Parts drawn inside another take its inverse colour.
CLASSES: dict[str, list[tuple[str, float, float, float, float, bool]]] = {
    "face": [
        ("ring", 0, 0, 0.95, 0, False),
        ("dot", -0.32, 0.25, 0.14, 0, False),
        ("dot", 0.32, 0.25, 0.14, 0, False),
        ("arc", 0, -0.12, 0.42, 0, False),
    ],
    "house": [("square", 0, -0.32, 0.58, 0, False), ("triangle", 0, 0.48, 0.62, 0, False)],
    "tree": [("bar", 0, -0.55, 0.42, 90, False), ("triangle", 0, 0.22, 0.72, 0, False)],
    "car": [
        ("bar", 0, 0.12, 0.95, 0, False),
        ("circle", -0.52, -0.3, 0.24, 0, False),
        ("circle", 0.52, -0.3, 0.24, 0, False),
    ],
    "snowman": [
        ("circle", 0, -0.42, 0.52, 0, False),
        ("circle", 0, 0.45, 0.38, 0, False),
        ("dot", -0.13, 0.52, 0.09, 0, True),
        ("dot", 0.13, 0.52, 0.09, 0, True),
    ],
    "target": [("ring", 0, 0, 0.95, 0, False), ("dot", 0, 0, 0.3, 0, False)],
    "umbrella": [("arc", 0, 0.05, 0.9, 180, False), ("bar", 0, -0.4, 0.55, 90, False)],
    "robot": [
        ("square", 0, 0, 0.85, 0, False),
        ("dot", -0.38, 0.3, 0.16, 0, True),
        ("dot", 0.38, 0.3, 0.16, 0, True),
        ("bar", 0, -0.4, 0.45, 0, True),
    ],
    "sign": [("bar", 0, -0.45, 0.55, 90, False), ("square", 0, 0.45, 0.38, 45, False)],
    "dumbbell": [
        ("bar", 0, 0, 0.62, 0, False),
        ("circle", -0.68, 0, 0.3, 0, False),
        ("circle", 0.68, 0, 0.3, 0, False),
    ],
}
CLASS_NAMES = list(CLASSES)


def _contrasting_colour(n: int, light_background: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random RGB colours, mostly from the brightness band opposite the background's.

    The bands overlap a little, so some parts are faint: colour alone never segments the object.
    """
    base = torch.rand(n, 3, generator=g) * 0.6
    return base + torch.where(light_background, 0.0, 0.4)[:, None]


def _render_part(
    canvas: torch.Tensor,
    sdf: Sdf,
    cx: torch.Tensor,
    cy: torch.Tensor,
    size: torch.Tensor,
    angle: torch.Tensor,
    colour: torch.Tensor,
) -> None:
    """Alpha-blend one part into each image of ``canvas`` (n, 3, H, W), in place."""
    h = canvas.shape[-1]
    pixel = 2.0 / h
    axis = (torch.arange(h, dtype=torch.float32) + 0.5) * pixel - 1.0
    dx = axis[None, None, :] - cx[:, None, None]
    dy = -axis[None, :, None] - cy[:, None, None]  # image rows grow downwards; y points up
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    scale = size[:, None, None]
    u = (cos * dx + sin * dy) / scale
    v = (-sin * dx + cos * dy) / scale
    alpha = (0.5 - sdf(u, v) * scale / pixel).clamp_(0.0, 1.0).unsqueeze(1)
    canvas.mul_(1.0 - alpha).add_(colour[:, :, None, None] * alpha)


def _background(n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Textured backgrounds: a base colour, smooth blotches and pixel noise."""
    light = torch.rand(n, generator=g) < 0.5
    base = torch.rand(n, 3, generator=g) * 0.5 + torch.where(light, 0.5, 0.0)[:, None]
    blotches = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    blotches = torch.nn.functional.interpolate(
        blotches, size=(size, size), mode="bicubic", align_corners=False
    )
    noise = torch.randn(n, 3, size, size, generator=g)
    canvas = base[:, :, None, None] + 0.2 * blotches + 0.05 * noise
    return canvas, light


def render_chunk(
    n: int, size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render ``n`` images of ``size`` x ``size``: (uint8 images, labels, part labels)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(CLASSES)
    labels = labels[torch.randperm(n, generator=g)]
    parts = torch.zeros(n, len(PARTS), dtype=torch.uint8)
    canvas, light = _background(n, size, g)

    # Stray parts first (behind the object): up to MAX_STRAYS per image, anywhere, as large as
    # the object's own parts, so part presence alone does not give the class away.
    strays = torch.multinomial(STRAY_COUNT_WEIGHTS, n, replacement=True, generator=g)
    for slot in range(MAX_STRAYS):
        kinds = torch.randint(len(PARTS), (n,), generator=g)
        for k, name in enumerate(PART_NAMES):
            idx = torch.nonzero((strays > slot) & (kinds == k)).flatten()
            if len(idx) == 0:
                continue
            m = len(idx)
            small = 0.5 if name == "dot" else 1.0
            sub = canvas[idx]
            _render_part(
                sub,
                PARTS[name],
                torch.rand(m, generator=g) * 1.6 - 0.8,
                torch.rand(m, generator=g) * 1.6 - 0.8,
                (torch.rand(m, generator=g) * 0.2 + 0.14) * small,
                torch.rand(m, generator=g) * 2 * math.pi,
                _contrasting_colour(m, light[idx], g),
            )
            canvas[idx] = sub
            parts[idx, k] = 1

    # Then the object: one similarity transform per image, applied to every part.
    for c, template in enumerate(CLASSES.values()):
        idx = torch.nonzero(labels == c).flatten()
        m = len(idx)
        if m == 0:
            continue
        scale = torch.rand(m, generator=g) * 0.4 + 0.4
        reach = 1.0 - 0.85 * scale
        ox = (torch.rand(m, generator=g) * 2 - 1) * reach
        oy = (torch.rand(m, generator=g) * 2 - 1) * reach
        turn = (torch.rand(m, generator=g) * 2 - 1) * math.radians(40)
        cos, sin = turn.cos(), turn.sin()
        sub = canvas[idx]
        colour = _contrasting_colour(m, light[idx], g)
        for name, px, py, psize, protation, inside in template:
            colour = 1.0 - colour if inside else _contrasting_colour(m, light[idx], g)
            _render_part(
                sub,
                PARTS[name],
                ox + scale * (cos * px - sin * py),
                oy + scale * (sin * px + cos * py),
                scale * psize,
                turn + math.radians(protation),
                colour,
            )
            parts[idx, PART_NAMES.index(name)] = 1
        canvas[idx] = sub
    images = (canvas.clamp_(0, 1) * 255).round_().to(torch.uint8)
    return images, labels, parts


def generate(num_images: int, size: int, seed: int, split: str) -> LabelledImages:
    """Generate ``num_images`` deterministically; any prefix matches a smaller request."""
    split_offset = {"train": 0, "test": 1}[split]
    chunks = []
    for start in range(0, num_images, CHUNK):
        # Always a whole chunk (the random draws depend on its length), trimmed afterwards.
        chunk_seed = (seed * 1_000_003 + split_offset) * 100_003 + start // CHUNK
        chunks.append(render_chunk(CHUNK, size, chunk_seed))
    images, labels, parts = (torch.cat(t)[:num_images] for t in zip(*chunks, strict=True))
    return LabelledImages(images, labels, parts)


class ShapesSource:
    """Generates the ``shapes`` data set once and caches it under ``root/shapes``."""

    def __init__(
        self, root: str, num_train: int = 50000, num_test: int = 10000, image_size: int = 32,
        seed: int = 0,
    ) -> None:
        self.root = Path(root).expanduser() / "shapes"
        self.num_train = num_train
        self.num_test = num_test
        self.image_size = image_size
        self.seed = seed

    def _cached(self, split: str, num_images: int) -> LabelledImages:
        name = f"{split}-{num_images}-{self.image_size}px-seed{self.seed}-v{FORMAT_VERSION}.pt"
        path = self.root / name
        with one_at_a_time(self.root, name):  # DDP ranks: one renders, the others load its cache
            if path.exists():
                saved = torch.load(path, weights_only=True)
                return LabelledImages(saved["images"], saved["labels"], saved["parts"])
            data = generate(num_images, self.image_size, self.seed, split)
            # Atomic: a crash never leaves a half-written cache behind.
            saved_bytes = torch_bytes({"images": data.images, "labels": data.labels, "parts": data.parts})
            write_atomically(path, saved_bytes)
        return data

    def load(self, max_train: int | None = None) -> ImageSplits:
        num_train = self.num_train if max_train is None else min(max_train, self.num_train)
        return ImageSplits(
            classes=CLASS_NAMES,
            train=self._cached("train", num_train),
            test=self._cached("test", self.num_test),
            part_names=PART_NAMES,
        )
