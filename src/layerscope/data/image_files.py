"""Image files decoded when a batch asks for them: a split that need not fit in memory.

:class:`ImageFiles` stands where an in-memory split holds a uint8 tensor: indexing it with a batch's
indices decodes those files to (N, C, size, size), in whichever process asks (the loader's worker
processes, when ``data.num_workers`` > 0). A training split may augment as it decodes, the way photo
pipelines do: a random crop of 25-100 % of the photo's area at a random aspect ratio, resized to the
network's input, and a random flip (``torchvision.transforms.v2``). Evaluation splits decode as
:func:`load_image` does: shorter side to ``resize_size``, centre crop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from layerscope.errors import UserError

log = logging.getLogger(__name__)
# Refuse absurd files rather than decoding gigapixels into memory.
Image.MAX_IMAGE_PIXELS = 100_000_000
PHOTO_CROP_SCALE = (0.25, 1.0)  # the share of the photo's area a random crop keeps


class UnreadableImage(UserError):
    """An image file that cannot be used; the message names the file and says why."""


def _open(path: Path, channels: int, short_side: int) -> Image.Image:
    with Image.open(path) as img:
        if img.width * img.height > Image.MAX_IMAGE_PIXELS:
            raise UnreadableImage(f"{path}: too large ({img.width}x{img.height} pixels; "
                                  f"the limit is {Image.MAX_IMAGE_PIXELS:,})")
        # A JPEG decodes at 1/2, 1/4 or 1/8 scale where its shorter side stays at least
        # ``short_side``: the decoder skips the work that a resize would throw away.
        ratio = short_side / min(img.size)
        if ratio < 1:
            img.draft(img.mode, (math.ceil(img.width * ratio), math.ceil(img.height * ratio)))
        return img.convert("L" if channels == 1 else "RGB")


def _decode(
    path: Path, channels: int, short_side: int, fit: Callable[[Image.Image], Image.Image]
) -> torch.Tensor:
    try:
        img = fit(_open(path, channels, short_side))
        array = np.asarray(img, dtype=np.uint8).reshape(img.height, img.width, channels)
    except UnidentifiedImageError as err:
        raise UnreadableImage(f"{path}: not an image file") from err
    except Image.DecompressionBombError as err:
        raise UnreadableImage(f"{path}: too large ({err})") from err
    except (OSError, ValueError) as err:
        raise UnreadableImage(f"{path}: unreadable image ({err})") from err
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def resize_and_crop(
    img: Image.Image, size: int, resize_size: int | None = None, resample: int | None = None
) -> Image.Image:
    """Shorter side to ``resize_size`` (default ``size``), then the centre ``size`` x ``size`` square;
    ``resample`` is PIL's filter (its default for the image's mode unless given: masks take nearest)."""
    short = resize_size or size
    scale = short / min(img.size)
    img = img.resize((max(short, round(img.width * scale)), max(short, round(img.height * scale))), resample)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return img.crop((left, top, left + size, top + size))


def load_image(path: Path, size: int, channels: int, resize_size: int | None = None) -> torch.Tensor:
    """One file as uint8 (C, size, size): converted, resized (shorter side to ``resize_size``,
    default ``size``) and centre-cropped; an :class:`UnreadableImage` saying why not."""
    return _decode(path, channels, resize_size or size, lambda img: resize_and_crop(img, size, resize_size))


def photo_augmentation(size: int) -> Callable[[Image.Image], Image.Image]:
    """Random resized crop and flip on a PIL image, drawing from torch's random number generator
    (seeded in each loader worker by the data loader)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop(size, scale=PHOTO_CROP_SCALE, antialias=True),
                       v2.RandomHorizontalFlip()])


class ImageFiles:
    """A split's images as files, decoded to uint8 (N, C, size, size) when indexed.

    ``augment`` makes each decode a random photo crop and flip (training); otherwise a decode is
    deterministic. ``select`` narrows the files without decoding any.
    """

    dtype = torch.uint8

    def __init__(
        self, paths: Sequence[str | Path], channels: int, size: int, resize_size: int | None = None,
        augment: bool = False,
    ) -> None:
        self.paths = [str(p) for p in paths]  # plain strings: cheap to send to worker processes
        self.channels, self.size, self.resize_size, self.augment = channels, size, resize_size, augment
        self._augmentation = photo_augmentation(size) if augment else None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.channels, self.size, self.size)

    def select(self, index: torch.Tensor | Sequence[int]) -> ImageFiles:
        picked = [self.paths[i] for i in torch.as_tensor(index).tolist()]
        return ImageFiles(picked, self.channels, self.size, self.resize_size, self.augment)

    def for_training(self, augment: bool) -> ImageFiles:
        """The same files as training decodes them: with the photo augmentation (``augment``), or
        resized to the input size itself (no evaluation border) for the batch augmentation."""
        return ImageFiles(self.paths, self.channels, self.size, None, augment)

    def for_evaluation(self, resize_size: int | None) -> ImageFiles:
        """The same files decoding for evaluation: shorter side to ``resize_size``, centre crop."""
        return ImageFiles(self.paths, self.channels, self.size, resize_size, False)

    def decode_one(self, i: int) -> torch.Tensor:
        path = Path(self.paths[i])
        if self._augmentation is not None:
            # A crop keeps a quarter of the area at least: decode at twice the input's side, so
            # that even the smallest crop is not enlarged from fewer pixels than it ends up with.
            return _decode(path, self.channels, 2 * self.size, self._augmentation)
        return load_image(path, self.size, self.channels, self.resize_size)

    def decode(self, index: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, list[int], list[str]]:
        """The images at ``index`` that decode, their positions in ``index``, and why the rest did not."""
        images, kept, bad = [], [], []
        for position, i in enumerate(torch.as_tensor(index).tolist()):
            try:
                images.append(self.decode_one(i))
                kept.append(position)
            except UnreadableImage as err:
                bad.append(str(err))
        empty = torch.empty(0, self.channels, self.size, self.size, dtype=torch.uint8)
        return (torch.stack(images) if images else empty), kept, bad

    def __getitem__(self, index: int | slice | torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Decoded images, one per index. A file that fails to decode (it was listed, so its header
        was fine) becomes a mid-grey image with a warning: the views index images and labels alike,
        so none may go missing."""
        if isinstance(index, int):
            return self[[index]][0]
        positions = list(range(len(self))[index]) if isinstance(index, slice) else torch.as_tensor(index)
        images, kept, bad = self.decode(positions)
        if not bad:
            return images
        log.warning("%d unreadable files shown as grey images: %s", len(bad), "; ".join(bad))
        filled = torch.full((len(positions), self.channels, self.size, self.size), 128, dtype=torch.uint8)
        filled[kept] = images
        return filled


class FileBatches(torch.utils.data.Dataset):
    """A dataset indexed by a whole batch of indices (the samplers here yield one tensor per batch).

    Images in memory are one gather; image files are decoded, and a file that turns out unreadable
    is left out of its batch with a warning, so one bad file costs one image, not the epoch.
    """

    def __init__(self, images: torch.Tensor | ImageFiles, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.images, torch.Tensor):
            return self.images[index], self.labels[index]
        images, kept, bad = self.images.decode(index)
        if bad:
            log.warning("skipped %d unreadable files in this batch: %s", len(bad), "; ".join(bad))
        return images, self.labels[index][kept]


class _Chunks(torch.utils.data.Dataset):
    """Chunks of a file list to decode, each with its offset: for :func:`decode_all`'s workers."""

    def __init__(self, files: ImageFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, list[int], list[str]]:
        images, kept, bad = self.files.decode(index)
        return images, [int(index[k]) for k in kept], bad


def decode_all(
    files: ImageFiles, workers: int, chunk: int = 256
) -> tuple[torch.Tensor, list[int], list[str]]:
    """Every file decoded, in order, by ``workers`` processes: the images, the indices of the files
    they came from, and why the others did not decode."""
    order = torch.arange(len(files))
    loader = torch.utils.data.DataLoader(_Chunks(files), sampler=list(order.split(chunk)), batch_size=None,
                                         num_workers=workers)
    images, kept, bad = [], [], []
    for part, part_kept, part_bad in loader:
        images.append(part)
        kept += part_kept
        bad += part_bad
    empty = torch.empty(0, files.channels, files.size, files.size, dtype=torch.uint8)
    return (torch.cat(images) if images else empty), kept, bad
