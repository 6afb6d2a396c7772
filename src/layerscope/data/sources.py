"""Every data source and the data module, imported together so each registers in ``registry.DATA``."""

from layerscope.data.datamodule import ImageDataModule
from layerscope.data.imagefolder import ImageFolderSource
from layerscope.data.shapes import ShapesSource
from layerscope.data.torchvision_sets import Cifar10Source, IdxSource

__all__ = ["Cifar10Source", "IdxSource", "ImageDataModule", "ImageFolderSource", "ShapesSource"]
