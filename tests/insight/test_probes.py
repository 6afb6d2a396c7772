"""Per-part probes: a balanced accuracy per part, in a run's event files; none without part labels."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import MagicMock

import pytest
import torch
from torch import nn

from layerscope.data.base import ImageSource, ImageSplits, LabelledImages
from layerscope.data.datamodule import ImageDataModule
from layerscope.data.shapes import PART_NAMES
from layerscope.insight.base import Context
from layerscope.insight.probes import LayerProbes, probe_scores
from tests.insight.conftest import EVERY_SECOND_EPOCH, LAYERS, logged_pictures
from tests.insight.test_insight_run import _events


def test_each_part_gets_its_own_balanced_accuracy() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (900,), generator=generator)
    parts = (torch.rand(900, 3, generator=generator) > 0.6).to(torch.uint8)
    # The features carry the first part (and the class), not the other two.
    features = torch.cat([parts[:, :1].float(), nn.functional.one_hot(labels, 3).float()], 1)
    features = features + 0.1 * torch.randn(900, 4, generator=generator)
    scores = probe_scores(features, labels, parts, ["bar", "dot", "arc"])
    assert scores["parts/bar"] > 0.95
    assert abs(scores["parts/dot"] - 0.5) < 0.1 and abs(scores["parts/arc"] - 0.5) < 0.1
    assert scores["parts"] == pytest.approx(sum(scores[f"parts/{p}"] for p in ("bar", "dot", "arc")) / 3)
    assert "parts/bar" not in probe_scores(features, labels, parts)  # unnamed parts: the mean only


def test_a_run_logs_every_part_at_every_layer_before_training_and_every_second_epoch(
    runs: dict[str, Path]
) -> None:
    events = _events(runs["default"])
    scalars = events.Tags()["scalars"]
    steps = EVERY_SECOND_EPOCH
    assert len(PART_NAMES) == 7
    for part in PART_NAMES:
        tags = sorted(t for t in scalars if t.startswith(f"probe/parts/{part}/"))
        assert tags == [f"probe/parts/{part}/{layer}" for layer in LAYERS]  # sorted by name = by depth
        for tag in tags:
            values = events.Scalars(tag)
            assert [v.step for v in values] == steps and all(0 <= v.value <= 1 for v in values)
    for layer in LAYERS:  # the aggregate is still there, the mean of the parts
        for moment in range(len(steps)):
            each = [events.Scalars(f"probe/parts/{part}/{layer}")[moment].value for part in PART_NAMES]
            mean = events.Scalars(f"probe/parts/{layer}")[moment].value
            assert abs(mean - sum(each) / len(each)) < 1e-5
    assert [e.step for e in events.Images("probe/parts_vs_depth")] == steps


class _GreyImages(ImageSource):
    """A data source without part labels: 60 random 8x8 grey images in two classes."""

    def load(self, max_train: int | None = None) -> ImageSplits:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (60, 1, 8, 8), dtype=torch.uint8, generator=generator)
        return ImageSplits(["dark", "light"], LabelledImages(images, torch.arange(60) % 2))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4, 2)

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [("conv", self.conv), ("fc", self.fc)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


class _Classifier(nn.Module):
    """A LightningModule's stand-in: the network in ``.model``, called on preprocessed images."""

    def __init__(self) -> None:
        super().__init__()
        self.model = _Net()
        self.device = torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _Trainer:
    """The trainer members the probes read before training."""

    def __init__(self, datamodule: ImageDataModule) -> None:
        self.datamodule, self.global_step, self.current_epoch = datamodule, 0, 0


def test_data_without_part_labels_logs_no_part_probes() -> None:
    data = ImageDataModule(_GreyImages(), "grey", in_channels=1, num_classes=2, image_size=8,
                           val_size=30, test_size=10)
    data.setup()
    writer = MagicMock()
    LayerProbes(sample_size=30).draw(Context(_Trainer(data), _Classifier(), writer, step=0))
    scalars = [c.args[0] for c in writer.add_scalar.call_args_list]
    figures = logged_pictures(writer)
    assert [t for t in scalars if t.startswith("probe/")] == ["probe/class/01_conv", "probe/class/02_fc"]
    assert figures == ["probe/accuracy_vs_depth"]
