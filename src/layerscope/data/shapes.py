"""``shapes``: a procedural data set whose classes are built from shared parts.

Each image shows one object (a face, a house, a car, ...) made of primitive parts (circle, ring,
square, triangle, bar, dot, arc) at a random position, scale and rotation, in random colours on a
textured background; some images also hold stray parts beside the object. Every part is used by
at least two classes, so no single part names the class: a network has to detect parts (middle
layers) and then their arrangement (late layers). Every image carries its part labels, which the
layer probes use to measure where part information lives, and any image can be rendered again
with its concept masks (which part each pixel shows, the object, the part edges), which network
dissection scores single units against.

Rendering is vectorised: each part is a signed distance function evaluated on the pixel grid of
a whole batch at once and alpha-blended with an anti-aliased edge. Images are generated in chunks
with one seed each, so any prefix of the data set is the same whatever its total size.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from layerscope.data.base import ConceptMasks, ImageSource, ImageSplits, LabelledImages
from layerscope.data.cache import cached
from layerscope.files import torch_bytes
from layerscope.registry import DATA

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
) -> torch.Tensor:
    """Alpha-blend one part into each image of ``canvas`` (n, 3, H, W), in place; return its alpha."""
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
    return alpha


def _background(
    n: int, size: int, g: torch.Generator, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Textured backgrounds of images ``rows`` (of ``n``): a base colour, smooth blotches and pixel noise.

    The random numbers are drawn for all ``n`` images, so the rows come out as in the whole chunk.
    """
    light = torch.rand(n, generator=g) < 0.5
    base = torch.rand(n, 3, generator=g) * 0.5 + torch.where(light, 0.5, 0.0)[:, None]
    blotches = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(n, 3, size, size, generator=g)
    blotches = torch.nn.functional.interpolate(
        blotches[rows], size=(size, size), mode="bicubic", align_corners=False
    )
    canvas = base[rows, :, None, None] + 0.2 * blotches + 0.05 * noise[rows]
    return canvas, light


@dataclass
class PartMaps:
    """Which part each pixel of rendered images shows, aligned with the images pixel for pixel.

    A pixel shows a part when that part's alpha is over 0.5 and no part drawn later covers it
    (anti-aliased rims count for the part that covers most of the pixel).
    """

    # uint8 (N, H, W): 0 background, 1 + k an object part of kind PART_NAMES[k], 1 + len(PART_NAMES) + k
    # a stray part of that kind.
    visible: torch.Tensor
    # bool (N, H, W): the shape shown changes from this pixel to its right or lower neighbour (one pixel
    # wide, on the boundaries of parts, including two touching parts of one kind).
    edges: torch.Tensor

    def part(self, kind: str, of: str = "any") -> torch.Tensor:
        """bool (N, H, W): pixels showing a ``kind`` part: the ``object``'s, a ``stray`` one, or ``any``."""
        code = 1 + PART_NAMES.index(kind)
        codes = {"object": [code], "stray": [code + len(PART_NAMES)], "any": [code, code + len(PART_NAMES)]}
        return torch.isin(self.visible, torch.tensor(codes[of], dtype=torch.uint8))

    def object(self) -> torch.Tensor:
        """bool (N, H, W): pixels of each image's object, the union of its own parts."""
        return (self.visible >= 1) & (self.visible <= len(PART_NAMES))


def concepts(maps: PartMaps, labels: torch.Tensor) -> ConceptMasks:
    """The concepts of ``shapes``: part edges, each part kind (object or stray), each class's object."""
    whole = maps.object()
    objects = [whole & (labels == c)[:, None, None] for c in range(len(CLASS_NAMES))]
    masks = torch.stack([maps.edges, *(maps.part(kind) for kind in PART_NAMES), *objects], dim=1)
    kinds = ["edge"] + ["part"] * len(PART_NAMES) + ["object"] * len(CLASS_NAMES)
    return ConceptMasks(["edge", *PART_NAMES, *CLASS_NAMES], kinds, masks)


class _Canvas:
    """The images of one chunk being drawn: all of them, or only some rows; optionally their part maps.

    Parts are drawn on the rows kept only, with random numbers drawn for the whole chunk, so a
    kept row comes out exactly as it does when the whole chunk is drawn.
    """

    def __init__(self, pixels: torch.Tensor, n: int, rows: torch.Tensor, track: bool) -> None:
        self.pixels = pixels
        self.position = torch.full((n,), -1)
        self.position[rows] = torch.arange(len(rows))
        plane = (len(rows), *pixels.shape[-2:])
        self.visible = torch.zeros(plane, dtype=torch.uint8) if track else None
        self.shape = torch.zeros(plane, dtype=torch.uint8) if track else None

    def draw(
        self, images: torch.Tensor, sdf: Sdf, cx: torch.Tensor, cy: torch.Tensor, size: torch.Tensor,
        angle: torch.Tensor, colour: torch.Tensor, code: int, shape: int,
    ) -> None:
        """Draw one part on ``images`` (chunk indices, with one value each in the other arguments).

        ``code`` is the part's value in :attr:`PartMaps.visible`; ``shape`` numbers the part within
        its image, so that edges also separate two touching parts of one kind.
        """
        keep = self.position[images] >= 0
        at = self.position[images[keep]]
        if len(at) == 0:
            return
        sub = self.pixels[at]
        alpha = _render_part(sub, sdf, cx[keep], cy[keep], size[keep], angle[keep], colour[keep])
        self.pixels[at] = sub
        if self.visible is not None and self.shape is not None:
            covered = alpha[:, 0] > 0.5
            self.visible[at] = torch.where(covered, code, self.visible[at])
            self.shape[at] = torch.where(covered, shape, self.shape[at])

    def part_maps(self) -> PartMaps:
        if self.visible is None or self.shape is None:
            raise RuntimeError("part maps were not tracked")
        edges = torch.zeros_like(self.shape, dtype=torch.bool)
        edges[:, :, :-1] |= self.shape[:, :, :-1] != self.shape[:, :, 1:]
        edges[:, :-1, :] |= self.shape[:, :-1, :] != self.shape[:, 1:, :]
        return PartMaps(self.visible, edges)


def _render(
    n: int, size: int, seed: int, rows: torch.Tensor | None = None, track: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, _Canvas]:
    """Draw images ``rows`` (all ``n`` by default) of one chunk: (uint8 images, labels, parts, canvas).

    Labels and part labels are for all ``n`` images; the images and part maps for ``rows`` only.
    The steps draw from one generator in a fixed order, so a chunk is the same however it is cut.
    """
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(n) if rows is None else rows
    labels = torch.arange(n) % len(CLASSES)
    labels = labels[torch.randperm(n, generator=g)]
    parts = torch.zeros(n, len(PARTS), dtype=torch.uint8)
    pixels, light = _background(n, size, g, rows)
    canvas = _Canvas(pixels, n, rows, track)
    _draw_strays(canvas, light, parts, g)
    _draw_objects(canvas, labels, light, parts, g)
    images = (canvas.pixels.clamp_(0, 1) * 255).round_().to(torch.uint8)
    return images, labels, parts, canvas


def _draw_strays(canvas: _Canvas, light: torch.Tensor, parts: torch.Tensor, g: torch.Generator) -> None:
    """Stray parts, drawn first (behind the object): up to MAX_STRAYS per image, anywhere, as large
    as the object's own parts, so part presence alone does not give the class away. Marks them in
    ``parts``."""
    n = len(light)
    strays = torch.multinomial(STRAY_COUNT_WEIGHTS, n, replacement=True, generator=g)
    for slot in range(MAX_STRAYS):
        kinds = torch.randint(len(PARTS), (n,), generator=g)
        for k, name in enumerate(PART_NAMES):
            idx = torch.nonzero((strays > slot) & (kinds == k)).flatten()
            if len(idx) == 0:
                continue
            m = len(idx)
            small = 0.5 if name == "dot" else 1.0
            canvas.draw(
                idx,
                PARTS[name],
                torch.rand(m, generator=g) * 1.6 - 0.8,
                torch.rand(m, generator=g) * 1.6 - 0.8,
                (torch.rand(m, generator=g) * 0.2 + 0.14) * small,
                torch.rand(m, generator=g) * 2 * math.pi,
                _contrasting_colour(m, light[idx], g),
                code=1 + len(PART_NAMES) + k,
                shape=1 + slot,
            )
            parts[idx, k] = 1


def _draw_objects(
    canvas: _Canvas, labels: torch.Tensor, light: torch.Tensor, parts: torch.Tensor, g: torch.Generator
) -> None:
    """Each image's object, over the strays: its class's parts under one similarity transform per
    image (scale, shift, turn). Marks them in ``parts``."""
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
        colour = _contrasting_colour(m, light[idx], g)
        for j, (name, px, py, psize, protation, inside) in enumerate(template):
            colour = 1.0 - colour if inside else _contrasting_colour(m, light[idx], g)
            canvas.draw(
                idx,
                PARTS[name],
                ox + scale * (cos * px - sin * py),
                oy + scale * (sin * px + cos * py),
                scale * psize,
                turn + math.radians(protation),
                colour,
                code=1 + PART_NAMES.index(name),
                shape=1 + MAX_STRAYS + j,
            )
            parts[idx, PART_NAMES.index(name)] = 1


def render_chunk(
    n: int, size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render ``n`` images of ``size`` x ``size``: (uint8 images, labels, part labels)."""
    images, labels, parts, _ = _render(n, size, seed)
    return images, labels, parts


def render_with_maps(
    n: int, size: int, seed: int, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, PartMaps]:
    """Images ``rows`` of the chunk ``render_chunk(n, size, seed)``, identical to it, with their part maps.

    Costs the random draws of the whole chunk but the drawing of ``rows`` only.
    """
    images, labels, _, canvas = _render(n, size, seed, rows, track=True)
    return images, labels[rows], canvas.part_maps()


def _chunk_seed(seed: int, split: str, chunk: int) -> int:
    split_offset = {"train": 0, "test": 1}[split]
    return (seed * 1_000_003 + split_offset) * 100_003 + chunk


def generate(num_images: int, size: int, seed: int, split: str) -> LabelledImages:
    """Generate ``num_images`` deterministically; any prefix matches a smaller request."""
    # Always whole chunks (the random draws depend on their length), trimmed afterwards.
    chunks = [render_chunk(CHUNK, size, _chunk_seed(seed, split, start // CHUNK))
              for start in range(0, num_images, CHUNK)]
    images, labels, parts = (torch.cat(t)[:num_images] for t in zip(*chunks, strict=True))
    return LabelledImages(images, labels, parts)


def render_images_with_maps(
    indices: torch.Tensor, size: int, seed: int, split: str
) -> tuple[torch.Tensor, torch.Tensor, PartMaps]:
    """Images ``indices`` of what ``generate(..., size, seed, split)`` makes, with their part maps."""
    indices = torch.as_tensor(indices, dtype=torch.long)
    images = torch.empty(len(indices), 3, size, size, dtype=torch.uint8)
    labels = torch.empty(len(indices), dtype=torch.long)
    visible = torch.empty(len(indices), size, size, dtype=torch.uint8)
    edges = torch.empty(len(indices), size, size, dtype=torch.bool)
    chunk_of = indices // CHUNK
    for chunk in chunk_of.unique().tolist():
        wanted = torch.nonzero(chunk_of == chunk).flatten()
        rows, where = (indices[wanted] % CHUNK).unique(return_inverse=True)
        chunk_seed = _chunk_seed(seed, split, chunk)
        chunk_images, chunk_labels, maps = render_with_maps(CHUNK, size, chunk_seed, rows)
        images[wanted], labels[wanted] = chunk_images[where], chunk_labels[where]
        visible[wanted], edges[wanted] = maps.visible[where], maps.edges[where]
    return images, labels, PartMaps(visible, edges)


@DATA.register("shapes")
class ShapesSource(ImageSource):
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
        return cached(
            self.root / name,
            render=lambda: generate(num_images, self.image_size, self.seed, split),
            encode=lambda data: torch_bytes(
                {"images": data.images, "labels": data.labels, "parts": data.parts}
            ),
            decode=lambda raw: self._decode(raw, num_images),
        )

    def _decode(self, raw: bytes, num_images: int) -> LabelledImages | None:
        """The images in a cache's bytes, or None if they are not ``num_images`` images of this size."""
        try:
            saved = torch.load(io.BytesIO(raw), weights_only=True)
            data = LabelledImages(saved["images"], saved["labels"], saved["parts"])
        except Exception:  # whatever the bytes hold, a cache that does not load is rendered again
            return None
        wanted = (num_images, 3, self.image_size, self.image_size)
        if tuple(data.images.shape) != wanted or len(data.labels) != num_images or data.parts is None \
                or len(data.parts) != num_images:
            return None
        return data

    def load(self, max_train: int | None = None) -> ImageSplits:
        num_train = self.num_train if max_train is None else min(max_train, self.num_train)
        return ImageSplits(
            classes=CLASS_NAMES,
            train=self._cached("train", num_train),
            test=self._cached("test", self.num_test),
            part_names=PART_NAMES,
        )

    def concept_masks(
        self, split: str, indices: torch.Tensor, resize_size: int | None = None
    ) -> ConceptMasks:
        """Concept masks of images ``indices`` of ``split``, rendered again by the code that drew them."""
        _, labels, maps = render_images_with_maps(indices, self.image_size, self.seed, split)
        return concepts(maps, labels)
