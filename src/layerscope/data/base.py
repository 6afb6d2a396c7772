"""The data-source interface: what every source hands to the data module (uint8 image tensors in
memory, or image files), and what a source may offer beyond that (concept masks, decoding files)."""

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
    # Whether splits of image files are decoded into memory (the source's ``materialise``) or
    # streamed from disk batch by batch; tensors are in memory either way.
    in_memory: bool = True


@dataclass
class ConceptMasks:
    """Pixel masks of named concepts for N images: what network dissection scores units against."""

    names: list[str]
    kinds: list[str]  # "edge", "part" or "object", one per concept
    masks: torch.Tensor  # bool (N, K, H, W)


class ImageSource(Protocol):
    """A data set as the data module reads it. Sources subclass this to take the defaults of the
    optional members: a source that only has images needs nothing but ``load``."""

    def load(self, max_train: int | None = None) -> ImageSplits:
        """The splits, as tensors or image files; ``max_train`` lets a quick run skip the rest."""
        ...

    def materialise(self, split: LabelledImages, where: str) -> LabelledImages:
        """``split`` with its image files decoded into a tensor, for splits ``load`` marked
        ``in_memory``. Sources that hand over tensors keep this default."""
        return split

    def concept_masks(self, split: str, indices: torch.Tensor) -> ConceptMasks | None:
        """Concept masks of images ``indices`` of the source's ``split``; None where it has none."""
        return None
