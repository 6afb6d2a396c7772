"""A folder of generated JPEG photos, one sub-folder per class, for trying ``data=imagefolder`` at scale.

Each photo is a shape (the class) in a random colour, size and place, on a background of two
random colours blended across the picture with noise, saved as a JPEG of a random size between
``min_side`` and ``max_side`` pixels per side. Deterministic for a given seed.

    python -m layerscope.data.photo_folder data/photos --per-class 2000
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "star", "cross")


def _polygon(kind: str, cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    if kind == "square":
        corners, radii = 4, [r]
    elif kind == "triangle":
        corners, radii = 3, [r]
    elif kind == "star":
        corners, radii = 10, [r, 0.45 * r]
    else:  # cross: twelve corners of a plus sign
        corners, radii = 12, [r, 0.45 * r, 0.45 * r]
    points = []
    for i in range(corners):
        angle = turn + 2 * math.pi * i / corners
        radius = radii[i % len(radii)] if kind != "cross" else (r if i % 3 == 1 else 0.5 * r)
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def photo(kind: str, rng: np.random.Generator, min_side: int, max_side: int) -> Image.Image:
    """One generated photo of a ``kind`` shape."""
    width, height = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    colours = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    blend = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    background = colours[0] * (1 - blend) + colours[1] * blend + rng.normal(0, 12, (height, width, 3))
    img = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    r = float(rng.uniform(0.15, 0.35)) * min(width, height)
    cx, cy = float(rng.uniform(r, width - r)), float(rng.uniform(r, height - r))
    fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(_polygon(kind, cx, cy, r, float(rng.uniform(0, 2 * math.pi))), fill=fill)
    return img


def write_photo_folder(
    root: str | Path, per_class: int, min_side: int = 300, max_side: int = 500, seed: int = 0,
    classes: tuple[str, ...] = CLASSES,
) -> list[Path]:
    """Write ``per_class`` JPEGs into ``root/<class>/`` for each class; return the paths written."""
    rng = np.random.default_rng(seed)
    written = []
    for kind in classes:
        folder = Path(root) / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = folder / f"{i:06d}.jpg"
            photo(kind, rng, min_side, max_side).save(path, quality=90)
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder to write (class sub-folders are made in it)")
    parser.add_argument("--per-class", type=int, default=400, help="photos per class (5 classes)")
    parser.add_argument("--min-side", type=int, default=300, help="smallest photo side in pixels")
    parser.add_argument("--max-side", type=int, default=500, help="largest photo side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="generation seed")
    args = parser.parse_args()
    paths = write_photo_folder(args.root, args.per_class, args.min_side, args.max_side, args.seed)
    print(f"wrote {len(paths)} photos into {args.root}")


if __name__ == "__main__":
    main()
