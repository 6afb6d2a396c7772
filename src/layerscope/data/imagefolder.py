"""The user's own images: one sub-folder per class, optionally already split into train/val/test.

The files are listed, not read, when the data set loads. Where their decoded pixels fit the memory
budget (``cache=auto``; or always with ``cache=memory``) each split is decoded once into a uint8
tensor, the fast path for small images; otherwise (``cache=disk``) the splits stay files and every
batch is decoded when it is needed, in the loader's worker processes, so memory stays flat however
large the folder is.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from PIL import Image

from layerscope.data.base import ConceptMasks, ImageSource, ImageSplits, LabelledImages
from layerscope.data.folder_masks import folder_masks, masks_folder
from layerscope.data.image_files import ImageFiles, decode_all
from layerscope.errors import UserError
from layerscope.registry import DATA

log = logging.getLogger(__name__)
SPLIT_FOLDERS = ("train", "val", "test")
CACHES = ("auto", "memory", "disk")
BAD_FILE_POLICIES = ("skip", "fail")


def _class_root(root: Path) -> Path:
    return root / "train" if (root / "train").is_dir() else root


def class_names(root: str | Path) -> list[str]:
    """Sorted class sub-folder names (of ``root/train`` if the folder is pre-split)."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserError(f"data.root={root} is not a folder: pass data.root=/path/to/images")
    masks = masks_folder(path)  # the user's concept masks (folder_masks.py), not a class
    names = sorted(p.name for p in _class_root(path).iterdir() if p.is_dir() and p != masks)
    if len(names) < 2:
        raise UserError(
            f"data.root={root} needs one sub-folder per class (at least two), e.g. cats/ and dogs/"
        )
    return names


def available_memory_bytes() -> int:
    """Memory the system can still hand out (Linux's MemAvailable), else all of physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _listed(bad: list[str]) -> str:
    return "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")


@DATA.register("imagefolder")
class ImageFolderSource(ImageSource):
    """Lists ``root/<class>/*`` (or ``root/{train,val,test}/<class>/*``); decodes into memory or streams.

    ``memory_budget_gb`` (null: half the memory available when the run starts) is what
    ``cache=auto`` allows the decoded images of all splits together.
    """

    def __init__(
        self, root: str, image_size: int = 64, in_channels: int = 3, on_bad_file: str = "skip",
        cache: str = "auto", memory_budget_gb: float | None = None,
    ) -> None:
        if on_bad_file not in BAD_FILE_POLICIES:
            raise UserError(f"data.source.on_bad_file={on_bad_file} must be skip or fail")
        if cache not in CACHES:
            raise UserError(f"data.source.cache={cache} must be one of {', '.join(CACHES)}")
        self.root = Path(root).expanduser()
        self.image_size, self.in_channels = image_size, in_channels
        self.on_bad_file, self.cache, self.memory_budget_gb = on_bad_file, cache, memory_budget_gb
        self._listed: dict[str, list[str]] = {}  # each split's image files, as load() listed them

    # --- listing -------------------------------------------------------------------------------
    def _list_split(self, folder: Path, classes: list[str]) -> LabelledImages:
        paths, labels, bad = [], [], []
        for label, name in enumerate(classes):
            class_dir = folder / name
            files = sorted(p for p in class_dir.rglob("*") if p.is_file()) if class_dir.is_dir() else []
            for path in files:
                if path.name.startswith("."):
                    continue
                problem = self._header_problem(path)
                if problem:
                    bad.append(problem)
                else:
                    paths.append(path)
                    labels.append(label)
        self._report_bad(bad, folder)
        if not paths:
            raise UserError(f"no readable images in {folder}: put image files in its class folders")
        files = ImageFiles(paths, self.in_channels, self.image_size)
        return LabelledImages(files, torch.tensor(labels))

    def _header_problem(self, path: Path) -> str | None:
        """Why ``path`` is no image, from its header alone (fast: no pixels are decoded)."""
        try:
            with Image.open(path) as img:
                img.size  # noqa: B018 - the header is parsed by now
        except Exception as err:  # PIL raises many kinds for a file that is no image
            return f"{path}: not an image file ({type(err).__name__})"
        return None

    def _report_bad(self, bad: list[str], folder: Path) -> None:
        if not bad:
            return
        if self.on_bad_file == "fail":
            raise UserError(
                f"{len(bad)} unreadable files in {folder}: {_listed(bad)}. Remove them, or pass "
                "data.source.on_bad_file=skip to train without them"
            )
        log.warning("skipped %d unreadable files in %s: %s", len(bad), folder, _listed(bad))

    def load(self, max_train: int | None = None) -> ImageSplits:
        classes = class_names(self.root)
        if not (self.root / "train").is_dir():
            splits = ImageSplits(classes, self._list_split(self.root, classes))
        else:
            found = {s: self._list_split(self.root / s, classes)
                     for s in SPLIT_FOLDERS if (self.root / s).is_dir()}
            splits = ImageSplits(classes, found["train"], found.get("test"), found.get("val"))
        for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
            if part is not None and isinstance(part.images, ImageFiles):
                self._listed[name] = part.images.paths
        splits.in_memory = self._fits_in_memory(splits)
        return splits

    def concept_masks(
        self, split: str, indices: torch.Tensor, resize_size: int | None = None
    ) -> ConceptMasks | None:
        """The user's masks (``<root>/masks/``, see ``folder_masks``) of images ``indices`` of ``split``."""
        if split not in self._listed:
            return None
        paths = [self._listed[split][i] for i in indices.tolist()]
        return folder_masks(self.root, paths, self.image_size, resize_size)

    # --- memory or disk ------------------------------------------------------------------------
    def _fits_in_memory(self, splits: ImageSplits) -> bool:
        if self.cache != "auto":
            return self.cache == "memory"
        count = sum(len(s) for s in (splits.train, splits.val, splits.test) if s is not None)
        decoded = count * self.in_channels * self.image_size ** 2
        budget = (self.memory_budget_gb * 2**30 if self.memory_budget_gb is not None
                  else available_memory_bytes() / 2)
        fits = decoded <= budget
        log.info("data.source.cache=auto: %d images decode to %.2f GB, the budget is %.2f GB: %s",
                 count, decoded / 1e9, budget / 1e9, "decoded into memory" if fits else "streamed from disk")
        return fits

    def materialise(self, split: LabelledImages, where: str) -> LabelledImages:
        """A split of files decoded into one uint8 tensor (for the in-memory path)."""
        files = split.images
        if not isinstance(files, ImageFiles):
            return split
        # Decoding is the slow part of loading a folder: spread over the cores.
        images, kept, bad = decode_all(files, workers=min(4, os.cpu_count() or 1) if len(files) > 512 else 0)
        self._report_bad(bad, self.root / where if where != "train" else self.root)
        if not kept:
            raise UserError(f"no readable images in the {where} split of {self.root}")
        index = torch.tensor(kept, dtype=torch.long)
        parts = None if split.parts is None else split.parts[index]
        return LabelledImages(images, split.labels[index], parts)
