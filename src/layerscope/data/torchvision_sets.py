"""Real data sets: Fashion-MNIST, MNIST and CIFAR-10, found on disk or downloaded once."""

from __future__ import annotations

from pathlib import Path

import torch

from layerscope.data.base import ImageSource, ImageSplits, LabelledImages
from layerscope.data.idx import read_idx
from layerscope.errors import UserError
from layerscope.files import one_at_a_time
from layerscope.registry import DATA

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
]
DIGITS = [str(d) for d in range(10)]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _how_to_replace(folder: Path) -> str:
    """What to do about a damaged file in ``folder``. Data the user placed is never deleted here."""
    if folder == DEBIAN_FASHION_MNIST:
        return "reinstall it (sudo apt-get install --reinstall dataset-fashion-mnist)"
    if folder.name == "raw":  # torchvision's download folder
        return "delete it and run again where there is a network, so that torchvision downloads it again"
    return "replace it with the original file, or delete it to use another copy"


def _load_idx_folder(folder: Path) -> dict[str, LabelledImages] | None:
    """Both splits from a folder of the four IDX files, or None if any is missing."""
    paths = {s: [_find(folder, stem) for stem in stems] for s, stems in IDX_FILES.items()}
    if any(p is None for pair in paths.values() for p in pair):
        return None
    splits = {}
    for split, (images_path, labels_path) in paths.items():
        try:
            images, labels = read_idx(images_path), read_idx(labels_path)
        except ValueError as err:
            raise UserError(f"{err}: {_how_to_replace(folder)}") from err
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(
                f"{images_path} holds {tuple(images.shape)} and {labels_path} {tuple(labels.shape)}: "
                f"images and labels of one split must match; {_how_to_replace(folder)}"
            )
        splits[split] = LabelledImages(images.unsqueeze(1).contiguous(), labels.long())
    return splits


@DATA.register("fashion_mnist", "mnist")
class IdxSource(ImageSource):
    """MNIST-format data: look in the given folders in order, else download with torchvision."""

    def __init__(self, root: str, name: str, download: bool = True) -> None:
        self.root = Path(root).expanduser()
        self.name = name
        self.download = download

    def foreground(self, images: torch.Tensor) -> torch.Tensor:
        """MNIST and Fashion-MNIST draw their digits and garments on a background of exactly 0."""
        return images.amax(dim=1) > 0

    @property
    def _spec(self) -> tuple[str, list[str], list[Path]]:
        """(torchvision class name, class names, folders searched before downloading)."""
        if self.name == "fashion_mnist":
            return "FashionMNIST", FASHION_CLASSES, [DEBIAN_FASHION_MNIST]
        if self.name == "mnist":
            return "MNIST", DIGITS, []
        raise UserError(f"data.source.name={self.name} is unknown: use fashion_mnist or mnist")

    def load(self, max_train: int | None = None) -> ImageSplits:
        tv_name, classes, system_dirs = self._spec
        local_dirs = [self.root, self.root / tv_name / "raw"]
        for folder in [*local_dirs, *system_dirs]:
            splits = _load_idx_folder(folder)
            if splits is not None:
                return ImageSplits(classes, splits["train"], splits["test"])
        raw = self.root / tv_name / "raw"
        with one_at_a_time(self.root, tv_name):  # one process downloads; the others wait for it
            splits = _load_idx_folder(raw)  # whoever held the lock before may have downloaded it
            if splits is None:
                self._download(tv_name, [*local_dirs, *system_dirs])
                splits = _load_idx_folder(raw)
        assert splits is not None, "torchvision downloaded the files to an unexpected place"
        return ImageSplits(classes, splits["train"], splits["test"])

    def _download(self, tv_name: str, searched: list[Path]) -> None:
        import torchvision.datasets

        where = ", ".join(str(p) for p in searched)
        hint = (
            f"put the four IDX files in data.root (now {self.root})"
            + (", install Debian's dataset-fashion-mnist" if self.name == "fashion_mnist" else "")
            + ", or go online so that torchvision can download them"
        )
        if not self.download:
            raise UserError(f"{tv_name} not found in {where}: {hint}")
        try:
            for train in (True, False):
                getattr(torchvision.datasets, tv_name)(str(self.root), train=train, download=True)
        except (OSError, RuntimeError) as err:
            raise UserError(
                f"{tv_name} not found in {where} and the download failed ({err}): {hint}"
            ) from err


@DATA.register("cifar10")
class Cifar10Source(ImageSource):
    """CIFAR-10 via torchvision, downloaded into ``root`` on first use."""

    def __init__(self, root: str, download: bool = True) -> None:
        self.root = Path(root).expanduser()
        self.download = download

    def load(self, max_train: int | None = None) -> ImageSplits:
        from torchvision.datasets import CIFAR10

        splits = {}
        for split in ("train", "test"):
            try:
                with one_at_a_time(self.root, "cifar10"):  # one process downloads; the others wait
                    data = CIFAR10(str(self.root), train=split == "train", download=self.download)
            except (OSError, RuntimeError) as err:
                raise UserError(
                    f"CIFAR-10 is not in data.root={self.root}, or its files fail their checksums, and "
                    f"could not be downloaded ({err}): go online once, or copy an intact "
                    f"cifar-10-batches-py into {self.root}"
                ) from err
            images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()
            splits[split] = LabelledImages(images, torch.tensor(data.targets))
        return ImageSplits(CIFAR10_CLASSES, splits["train"], splits["test"])
