"""The views read the data module and the model only through insight.inputs, which checks them."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from layerscope.data.base import ImageSource, ImageSplits, LabelledImages
from layerscope.data.datamodule import ImageDataModule
from layerscope.errors import UserError
from layerscope.insight.inputs import INSIGHT_DATA_MEMBERS, InsightData, insight_data, inspected_model

INSIGHT = Path(__file__).resolve().parents[2] / "src" / "layerscope" / "insight"


class _RandomImages(ImageSource):
    """A data source of 40 random 8x8 grey images in two classes."""

    def load(self, max_train: int | None = None) -> ImageSplits:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=generator)
        return ImageSplits(["dark", "light"], LabelledImages(images, torch.arange(40) % 2))


def _trainer(datamodule: object) -> SimpleNamespace:
    return SimpleNamespace(datamodule=datamodule)


def test_the_data_module_provides_what_insight_reads() -> None:
    data = ImageDataModule(_RandomImages(), "random", in_channels=1, num_classes=2, image_size=8,
                           val_size=10, test_size=10)
    data.setup()
    assert isinstance(data, InsightData)
    assert insight_data(_trainer(data)) is data
    assert INSIGHT_DATA_MEMBERS == ["classes", "concept_masks", "info", "preprocess", "val"]
    concepts = data.concept_masks(torch.arange(3))  # random grey images: only their own edges
    assert concepts is not None and concepts.names == ["edge"]


def test_a_data_module_without_a_member_is_refused_in_one_line_naming_it() -> None:
    class NoPreprocessing:
        def __init__(self) -> None:
            self.val = LabelledImages(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.zeros(1).long())
            self.classes, self.info = ["only"], {}

        def concept_masks(self, indices: torch.Tensor) -> None:
            return None

    with pytest.raises(UserError, match=r"NoPreprocessing \(no preprocess\).*insight=off") as error:
        insight_data(_trainer(NoPreprocessing()))
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="no data module"):
        insight_data(_trainer(None))


def test_the_inspected_model_is_the_modules_model() -> None:
    network = nn.Linear(2, 2)
    assert inspected_model(SimpleNamespace(model=network)) is network
    with pytest.raises(UserError, match=r"SimpleNamespace\.model.*insight=off"):
        inspected_model(SimpleNamespace(net=network))


def test_no_view_reads_the_data_module_or_the_model_by_attribute_name() -> None:
    reach = re.compile(r"trainer\.datamodule\b|pl_module\.model\b")
    for path in INSIGHT.glob("*.py"):
        if path.name != "inputs.py":
            assert not reach.findall(path.read_text()), f"{path.name} bypasses layerscope.insight.inputs"
