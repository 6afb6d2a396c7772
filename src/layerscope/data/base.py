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
    """Pixel masks of named concepts for N images: what network dissection scores units against.

    Each concept comes from a source (the data set's own masks, or ``image``: computed from the
    pixels); dissection labels each unit once per source, with the source's concept it matches best,
    so concepts joined from another source never change the labels of a source's own.
    """

    names: list[str]
    kinds: list[str]  # "edge", "part", "object" or "colour", one per concept
    masks: torch.Tensor  # bool (N, K, H, W)
    sources: list[str] | None = None  # one per concept; None: all from one source

    def groups(self) -> list[list[int]]:
        """The concepts' indices, source by source, in the order the sources first appear."""
        sources = self.sources or [""] * len(self.names)
        order = list(dict.fromkeys(sources))
        return [[k for k, source in enumerate(sources) if source == name] for name in order]

    def joined(self, other: ConceptMasks | None, source: str = "data") -> ConceptMasks:
        """These concepts, then ``other``'s, for the same images; ``source`` names these where unnamed."""
        if other is None:
            return self
        mine = self.sources or [source] * len(self.names)
        theirs = other.sources or ["other"] * len(other.names)
        return ConceptMasks([*self.names, *other.names], [*self.kinds, *other.kinds],
                            torch.cat([self.masks, other.masks], dim=1), [*mine, *theirs])


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

    def concept_masks(
        self, split: str, indices: torch.Tensor, resize_size: int | None = None
    ) -> ConceptMasks | None:
        """Concept masks of images ``indices`` of the source's ``split`` (as ``load`` listed it), fitted
        as evaluation fits image files (shorter side to ``resize_size``, centre crop); None where it
        has none."""
        return None

    def foreground(self, images: torch.Tensor) -> torch.Tensor | None:
        """bool (N, H, W): the pixels of uint8 ``images`` that are not background, where the data set
        defines its background without labels (MNIST's is exactly 0); None where it does not."""
        return None
