"""Network dissection: exact thresholds and IoUs, a network whose units copy known masks, the view."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import MagicMock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerscope.data.base import ImageSource, ImageSplits, LabelledImages
from layerscope.data.concepts import intensity_edges
from layerscope.data.datamodule import ImageDataModule
from layerscope.data.shapes import concepts, render_with_maps
from layerscope.insight.base import Context
from layerscope.insight.dissection import (
    DETECTOR_TYPES,
    NONE,
    ConceptCodes,
    Dissection,
    OverlapCounter,
    TopQuantile,
    detector_shares,
    dissect,
    label_units,
)
from tests.insight.conftest import EPOCHS, EVERY_SECOND_EPOCH, LAYERS
from tests.insight.test_insight_run import _events


def _masks(count: int = 300) -> tuple[torch.Tensor, list[str], list[str]]:
    _, labels, maps = render_with_maps(1000, 32, seed=3, rows=torch.arange(count))
    found = concepts(maps, labels)
    return found.masks, found.names, found.kinds


def test_thresholds_are_the_exact_top_quantile_over_batches() -> None:
    maps = torch.randn(40, 3, 8, 8, generator=torch.Generator().manual_seed(0)).relu()
    top = TopQuantile(0.05, images=40)
    for start in range(0, 40, 7):  # uneven batches
        top.add(maps[start : start + 7])
    threshold, floor = top.thresholds()
    values = maps.transpose(0, 1).flatten(1)
    keep = round(0.05 * values.shape[1])  # 128 of each channel's 2560 values
    assert torch.equal(threshold, values.topk(keep, dim=1).values[:, -1])
    assert torch.equal(floor, torch.zeros(3))


def test_overlaps_match_a_direct_count_at_any_resolution() -> None:
    masks, _, _ = _masks(60)
    g = torch.Generator().manual_seed(1)
    for side in (32, 16, 8):
        maps = torch.randn(60, 5, side, side, generator=g).relu()
        threshold = maps.transpose(0, 1).flatten(1).quantile(0.97, dim=1)
        floor = torch.zeros(5)
        codes = ConceptCodes.of(masks)
        counter = OverlapCounter(threshold, floor, codes.combos)
        for start in range(0, 60, 25):
            counter.add(maps[start : start + 25], codes.ids[start : start + 25])
        area = masks.sum(dim=(0, 2, 3)).float()
        up = F.interpolate(maps, size=(32, 32), mode="bilinear", align_corners=False)
        on = (up >= threshold[None, :, None, None]) & (up > 0)
        inter = torch.einsum("ncp,nkp->ck", on.flatten(2).float(), masks.flatten(2).float())
        union = on.sum(dim=(0, 2, 3)).float()[:, None] + area - inter
        assert torch.allclose(counter.iou(area), inter / union)


def test_concept_codes_give_back_every_pixel_s_concepts() -> None:
    masks, _, _ = _masks(20)
    many = torch.rand(4, 70, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.1  # too many bits
    for concept_masks in (masks, many):
        codes = ConceptCodes.of(concept_masks)
        rebuilt = codes.combos[codes.ids].permute(0, 3, 1, 2).bool()  # (N, H, W, K) -> (N, K, H, W)
        assert torch.equal(rebuilt, concept_masks)
        assert len(torch.unique(codes.combos, dim=0)) == len(codes.combos)  # each combination once


def test_labels_and_shares() -> None:
    iou = torch.tensor([[0.01, 0.03], [0.2, 0.05], [0.0, 0.04], [0.0, 0.0]])
    labels = label_units(iou, 0.04)
    assert labels[:, 0].tolist() == [NONE, 0, 1, NONE]  # one group of concepts: one label per unit
    assert detector_shares(labels, ["edge", "object"]) == {"edge": 0.25, "object": 0.25}  # no part concept
    # Two groups (a data set's own concepts, then computed ones): a label from each, counted per kind.
    both = label_units(iou, 0.04, groups=[[0], [1]])
    assert both.tolist() == [[NONE, NONE], [0, 1], [NONE, 1], [NONE, NONE]]
    assert detector_shares(both, ["edge", "colour"]) == {"edge": 0.25, "colour": 0.5}


class CopyNet(nn.Module):
    """Fed concept masks as images: layer ``copy`` is the masks themselves plus one silent unit,
    ``pooled`` the same at half resolution, then a classifier (no map, so not dissected)."""

    def __init__(self, concepts: int) -> None:
        super().__init__()
        self.copy = nn.Conv2d(concepts, concepts + 1, 1, bias=False)
        with torch.no_grad():
            self.copy.weight.zero_()
            self.copy.weight[:concepts, :, 0, 0] = torch.eye(concepts)
        self.pooled = nn.MaxPool2d(2)
        self.fc = nn.Linear((concepts + 1) * 16 * 16, 3)

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [("copy", self.copy), ("pooled", self.pooled), ("fc", self.fc)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(self.copy(x)).flatten(1))


def test_units_that_copy_concept_masks_are_labelled_with_them() -> None:
    masks, names, kinds = _masks()
    model = CopyNet(len(names))
    model.train()
    # A quantile below every concept's share puts each copying unit's threshold at 1: on = mask.
    layers = dissect(model, model, masks.float(), masks, quantile=0.001, iou_threshold=0.04, batch_size=128)
    assert [(layer.index, layer.name) for layer in layers] == [(0, "copy"), (1, "pooled")]
    copy, pooled = layers
    assert copy.labels[:, 0].tolist() == [*range(len(names)), NONE]  # the silent unit detects nothing
    assert torch.allclose(copy.iou[:, : len(names)].diagonal(), torch.ones(len(names)))
    assert copy.iou[-1].max() == 0
    assert detector_shares(copy.labels, kinds) == {"edge": 1 / 19, "part": 7 / 19, "object": 10 / 19}
    # At half resolution (2x2 max-pooled, upsampled back) each unit still finds its concept, less exactly.
    concept = range(len(names))
    assert pooled.labels[:, 0].tolist() == [*concept, NONE]
    diagonal = pooled.iou[concept, concept]
    assert (diagonal[1:] > 0.4).all() and (diagonal < 0.9).all() and diagonal[0] > 0.15  # edges blur most
    assert model.training and all(m.training for m in model.modules())  # modes restored
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed


def test_kept_maps_and_a_second_pass_give_the_same_dissection() -> None:
    """Without room to keep the maps, the overlaps come from a second pass, with the same result."""
    masks, names, _ = _masks()
    model, batches = CopyNet(len(names)), []
    model.register_forward_pre_hook(lambda *_: batches.append(1))
    kept = dissect(model, model, masks.float(), masks, quantile=0.02, iou_threshold=0.04, batch_size=50)
    assert len(batches) == math.ceil(len(masks) / 50)  # one pass
    again = dissect(model, model, masks.float(), masks, quantile=0.02, iou_threshold=0.04, batch_size=50,
                    keep_maps_bytes=0)
    assert len(batches) == 3 * math.ceil(len(masks) / 50)  # then two
    for one, other in zip(kept, again, strict=True):
        assert torch.equal(one.iou, other.iou) and torch.equal(one.labels, other.labels)
        assert torch.equal(one.threshold, other.threshold)


# --- the view ------------------------------------------------------------------------------------
def test_a_run_logs_every_dissection_tag_before_training_and_every_second_epoch(
    runs: dict[str, Path]
) -> None:
    events = _events(runs["default"])
    steps = EVERY_SECOND_EPOCH
    assert EPOCHS % 2 == 0 and len(steps) < EPOCHS + 1  # so the last epoch is one of them, and one is skipped
    maps = LAYERS[:-1]  # every layer but the classifier outputs a map
    scalars = events.Tags()["scalars"]
    for kind in DETECTOR_TYPES:
        tags = sorted(t for t in scalars if t.startswith(f"dissection/{kind}/"))
        assert tags == [f"dissection/{kind}/{layer}" for layer in maps]  # sorted by name = by depth
        for tag in tags:
            assert [e.step for e in events.Scalars(tag)] == steps
    for layer in maps:
        for moment in range(len(steps)):
            total = sum(events.Scalars(f"dissection/{kind}/{layer}")[moment].value for kind in DETECTOR_TYPES)
            assert 0 <= total <= 1
    for tag in ("dissection/detectors_by_depth", "dissection/best_detectors"):
        assert [e.step for e in events.Images(tag)] == steps
    table = events.Tensors("dissection/detectors/text_summary")
    assert [e.step for e in table] == steps
    text = table[-1].tensor_proto.string_val[0].decode()
    assert "| layer | unit | concept | type | IoU |" in text and "| 01_stem |" in text


def test_insight_off_logs_no_dissection(runs: dict[str, Path]) -> None:
    tags = _events(runs["off"]).Tags()
    logged = [t for kind in ("scalars", "images", "tensors") for t in tags[kind]]
    assert logged and not [t for t in logged if t.startswith("dissection")]


class _RandomImages(ImageSource):
    """A data source without concept masks: 40 random 8x8 grey images in two classes."""

    def load(self, max_train: int | None = None) -> ImageSplits:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=generator)
        return ImageSplits(["dark", "light"], LabelledImages(images, torch.arange(40) % 2))


class _NoConcepts(ImageDataModule):
    """A data module that can give no concept masks at all."""

    def concept_masks(self, indices: torch.Tensor) -> None:
        return None


def test_data_without_any_concepts_says_so_once_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    data = _NoConcepts(_RandomImages(), "random", in_channels=1, num_classes=2, image_size=8,
                       val_size=10, test_size=10)
    data.setup()
    writer = MagicMock()
    view = Dissection()
    with caplog.at_level(logging.INFO, logger="layerscope.insight.dissection"):
        for step in range(3):
            view.draw(Context(SimpleNamespace(datamodule=data), MagicMock(), writer, step))
    assert writer.mock_calls == []
    assert [r.getMessage() for r in caplog.records] == [
        "dissection: no concept masks for these images, so it logs nothing"
    ]


def test_data_without_masks_of_its_own_is_dissected_with_the_edges_of_its_images() -> None:
    data = ImageDataModule(_RandomImages(), "random", in_channels=1, num_classes=2, image_size=8,
                           val_size=10, test_size=10)
    data.setup()
    concepts = data.concept_masks(torch.arange(10))
    assert concepts is not None  # grey images without a known background: their edges only
    assert (concepts.names, concepts.kinds, concepts.sources) == (["edge"], ["edge"], ["image"])
    assert torch.equal(concepts.masks[:, 0], intensity_edges(data.val.images[:10]))


class _Classifier(nn.Module):
    """A LightningModule's stand-in: the network in ``.model``, called on preprocessed images."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 10)

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [("fc", self.fc)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_a_model_without_maps_says_so_once_and_logs_nothing(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.data.test_datamodule import make

    data = make(data_dir)
    data.setup()
    writer, view = MagicMock(), Dissection(sample_size=20)
    with caplog.at_level(logging.INFO, logger="layerscope.insight.dissection"):
        for step in range(2):
            view.draw(Context(SimpleNamespace(datamodule=data), _Classifier(_Linear()), writer, step))
    assert writer.mock_calls == []
    assert [r.getMessage() for r in caplog.records] == [
        "dissection: the model has no convolutional layers, so it logs nothing"
    ]
