"""The user's own images: one sub-folder per class, optionally already split into train/val/test."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from layerscope.data.base import ImageSplits, LabelledImages
from layerscope.errors import UserError

log = logging.getLogger(__name__)
SPLIT_FOLDERS = ("train", "val", "test")
# Refuse absurd files rather than decoding gigapixels into memory.
Image.MAX_IMAGE_PIXELS = 100_000_000


def _class_root(root: Path) -> Path:
    return root / "train" if (root / "train").is_dir() else root


def class_names(root: str | Path) -> list[str]:
    """Sorted class sub-folder names (of ``root/train`` if the folder is pre-split)."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserError(f"data.root={root} is not a folder: pass data.root=/path/to/images")
    names = sorted(p.name for p in _class_root(path).iterdir() if p.is_dir())
    if len(names) < 2:
        raise UserError(
            f"data.root={root} needs one sub-folder per class (at least two), e.g. cats/ and dogs/"
        )
    return names


class UnreadableImage(UserError):
    """An image file that cannot be used; the message names the file and says why."""


def load_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """Open, convert and resize (shorter side, then centre crop) to a uint8 (C, size, size)."""
    try:
        with Image.open(path) as img:
            if img.width * img.height > Image.MAX_IMAGE_PIXELS:
                raise UnreadableImage(f"{path}: too large ({img.width}x{img.height} pixels; "
                                      f"the limit is {Image.MAX_IMAGE_PIXELS:,})")
            img = img.convert("L" if channels == 1 else "RGB")
            scale = size / min(img.size)
            img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))))
            left, top = (img.width - size) // 2, (img.height - size) // 2
            img = img.crop((left, top, left + size, top + size))
            array = np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
    except UnidentifiedImageError as err:
        raise UnreadableImage(f"{path}: not an image file") from err
    except Image.DecompressionBombError as err:
        raise UnreadableImage(f"{path}: too large ({err})") from err
    except (OSError, ValueError) as err:
        raise UnreadableImage(f"{path}: unreadable image ({err})") from err
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


class ImageFolderSource:
    """Loads ``root/<class>/*`` (or ``root/{train,val,test}/<class>/*``) into memory."""

    def __init__(
        self, root: str, image_size: int = 64, in_channels: int = 3, on_bad_file: str = "skip"
    ) -> None:
        if on_bad_file not in ("skip", "fail"):
            raise UserError(f"data.source.on_bad_file={on_bad_file} must be skip or fail")
        self.root = Path(root).expanduser()
        self.image_size = image_size
        self.in_channels = in_channels
        self.on_bad_file = on_bad_file

    def _load_split(self, folder: Path, classes: list[str]) -> LabelledImages:
        images, labels, bad = [], [], []
        for label, name in enumerate(classes):
            class_dir = folder / name
            files = sorted(p for p in class_dir.rglob("*") if p.is_file()) if class_dir.is_dir() else []
            for path in files:
                try:
                    images.append(load_image(path, self.image_size, self.in_channels))
                    labels.append(label)
                except UnreadableImage as err:
                    bad.append(str(err))
        if bad:
            listed = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
            if self.on_bad_file == "fail":
                raise UserError(
                    f"{len(bad)} unreadable files in {folder}: {listed}. Remove them, or pass "
                    "data.source.on_bad_file=skip to train without them"
                )
            log.warning("skipped %d unreadable files in %s: %s", len(bad), folder, listed)
        if not images:
            raise UserError(f"no readable images in {folder}: put image files in its class folders")
        return LabelledImages(torch.stack(images), torch.tensor(labels))

    def load(self, max_train: int | None = None) -> ImageSplits:
        classes = class_names(self.root)
        if not (self.root / "train").is_dir():
            return ImageSplits(classes, self._load_split(self.root, classes))
        splits = {
            s: self._load_split(self.root / s, classes)
            for s in SPLIT_FOLDERS
            if (self.root / s).is_dir()
        }
        return ImageSplits(classes, splits["train"], splits.get("test"), splits.get("val"))
