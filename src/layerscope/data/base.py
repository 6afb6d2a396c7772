"""What every data source hands to the data module: uint8 image tensors in memory, or image files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from layerscope.data.image_files import ImageFiles


@dataclass
class LabelledImages:
    """One split: ``images`` uint8 (N, C, H, W) or the files they decode from, ``labels`` int64 (N,),
    optional part labels."""

    images: torch.Tensor | ImageFiles
    labels: torch.Tensor
    parts: torch.Tensor | None = None  # uint8 (N, num_parts): 1 where a part is in the image

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> LabelledImages:
        parts = None if self.parts is None else self.parts[index]
        images = self.images.select(index) if isinstance(self.images, ImageFiles) else self.images[index]
        return LabelledImages(images, self.labels[index], parts)


@dataclass
class ImageSplits:
    """A data set as loaded: train always; val and test where the source defines them."""

    classes: list[str]
    train: LabelledImages
    test: LabelledImages | None = None
    val: LabelledImages | None = None
    part_names: list[str] = field(default_factory=list)


class ImageSource(Protocol):
    """Loads a data set into memory. ``max_train`` lets a quick run skip loading the rest."""

    def load(self, max_train: int | None = None) -> ImageSplits: ...
