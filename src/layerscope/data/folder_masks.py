"""Concept masks a user brings for an image folder, for network dissection on their own images.

The layout, beside the class folders (``data.root`` is the folder holding them)::

    <root>/masks/concepts.yaml                           # each concept's kind
    <root>/masks/<concept>/<image path under root>.png   # one mask per image and concept

``concepts.yaml`` maps each concept (a folder name under ``masks/``) to its kind: ``edge``,
``part``, ``object``, ``colour`` or a kind of the user's own (a word), which the dissection reports
like the others. A mask is a PNG of the image's own size, black where the concept is absent and
white (or 1) where it is present, nothing in between; ``cats/a.jpg`` has the mask
``masks/wheel/cats/a.jpg.png`` for concept ``wheel``. Every image the dissection reads (its sample
of the validation split) needs a mask of every concept: an all-black one where the concept is not
in the image. Masks are read for those images only, when the dissection first asks, resized and
centre-cropped as the images are for evaluation (nearest neighbour: they stay binary), and
checked as they are read: a missing mask, one of another size or one that is not binary, a concept
without a kind or a kind without masks ends the run in one line naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from layerscope.data.base import ConceptMasks
from layerscope.data.image_files import resize_and_crop
from layerscope.errors import UserError

MASKS = "masks"  # the folder under data.root
KINDS_FILE = "concepts.yaml"
SOURCE = "masks"  # the label group of the user's concepts
_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def masks_folder(root: Path) -> Path | None:
    """``root/masks`` where it holds ``concepts.yaml`` (then it is no class folder), else None."""
    folder = root / MASKS
    return folder if (folder / KINDS_FILE).is_file() else None


def concept_kinds(folder: Path) -> dict[str, str]:
    """``concepts.yaml``, checked: every entry a concept folder with a kind, every folder an entry."""
    path = folder / KINDS_FILE
    try:
        kinds = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"{path}: not readable as YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(kinds, dict) or not kinds or not all(
            isinstance(k, str) and isinstance(v, str) and _WORD.match(v) for k, v in kinds.items()):
        raise UserError(f"{path}: write one line per concept, concept: kind (edge, part, object, colour "
                        "or a word of your own), e.g. wheel: part")
    folders = sorted(p.name for p in folder.iterdir() if p.is_dir())
    unknown = [name for name in folders if name not in kinds]
    if unknown:
        raise UserError(f"{folder / unknown[0]}: a concept folder with no kind in {path}: add {unknown[0]}: "
                        "part (or its kind)")
    missing = [name for name in kinds if name not in folders]
    if missing:
        raise UserError(f"{path} names {missing[0]}, but {folder / missing[0]} is no folder of masks")
    return dict(kinds)


def _image_size(image: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header."""
    try:
        with Image.open(image) as opened:
            return opened.size
    except OSError as err:
        raise UserError(f"{image}: not readable as an image ({err})") from None


def _mask(
    path: Path, expected: tuple[int, int], image: Path, size: int, resize_size: int | None
) -> torch.Tensor:
    """bool (size, size): the mask of ``image`` (``expected`` pixels) at ``path``, checked and fitted as
    the image is."""
    if not path.is_file():
        raise UserError(f"{path}: missing; every image the dissection reads needs a mask of every concept "
                        "(an all-black PNG where the concept is absent)")
    try:
        with Image.open(path) as opened:
            mask = opened.convert("L")
    except OSError as err:
        raise UserError(f"{path}: not readable as an image ({err})") from None
    if mask.size != expected:
        raise UserError(f"{path}: {mask.size[0]}x{mask.size[1]} pixels, but its image {image} is "
                        f"{expected[0]}x{expected[1]}")
    values = np.asarray(mask)
    top = values.max(initial=0)
    if not np.isin(values, (0, top)).all() or top not in (0, 1, 255):
        raise UserError(
            f"{path}: not binary (values other than black and white); save it with 0 and 255 only"
        )
    fitted = resize_and_crop(mask, size, resize_size, Image.Resampling.NEAREST)  # as the image, kept binary
    return torch.from_numpy(np.asarray(fitted) > 0)


def folder_masks(
    root: Path, images: Sequence[str], size: int, resize_size: int | None = None
) -> ConceptMasks | None:
    """The user's concept masks of the image files ``images`` (under ``root``), None without ``masks/``."""
    folder = masks_folder(root)
    if folder is None:
        return None
    kinds = concept_kinds(folder)
    stacked = []
    for image in images:
        relative = Path(image).resolve().relative_to(root.resolve())
        expected = _image_size(Path(image))  # once per image, for all its masks
        stacked.append(torch.stack([
            _mask(folder / concept / f"{relative}.png", expected, Path(image), size, resize_size)
            for concept in kinds
        ]))
    masks = torch.stack(stacked) if stacked else torch.zeros(0, len(kinds), size, size, dtype=torch.bool)
    return ConceptMasks(list(kinds), list(kinds.values()), masks, sources=[SOURCE] * len(kinds))
