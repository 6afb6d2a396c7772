"""Concept discovery: superpixels, in-context embeddings, planted concepts scored by Captum, the view."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.concept import TCAV
from torch import nn

from layerscope.errors import UserError
from layerscope.insight import ace
from layerscope.insight.discovery import ConceptDiscovery, discover_concepts, part_concepts
from layerscope.insight.tcav import SegmentProbe, own_generators
from tests.insight.conftest import EPOCHS, LAYERS
from tests.insight.test_insight_run import _events

SIZE = 32
SQUARE = 10


class ColourDetector(nn.Module):
    """One 1x1 convolution whose channel 0 is red minus the rest and channel 1 blue minus the rest;
    the class logits are the mean of each channel's positive part: class 0 red, class 1 blue."""

    def __init__(self) -> None:
        super().__init__()
        self.detect = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.detect.weight.copy_(torch.tensor([[1.0, -0.5, -0.5], [-0.5, -0.5, 1.0]])[:, :, None, None])
            self.detect.bias.zero_()

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [("detect", self.detect)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.detect(images)).mean(dim=(2, 3))


def planted(count: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grey noise images, each with one red (class 0) or blue (class 1) square; and the squares' masks
    as (N, 2, H, W): red squares in channel 0, blue in channel 1."""
    generator = torch.Generator().manual_seed(seed)
    images = (110 + 30 * torch.rand(count, 3, SIZE, SIZE, generator=generator)).to(torch.uint8)
    labels = torch.arange(count) % 2
    masks = torch.zeros(count, 2, SIZE, SIZE, dtype=torch.bool)
    colours = torch.tensor([[220, 30, 30], [30, 30, 220]], dtype=torch.uint8)
    for i in range(count):
        top, left = (int(v) for v in torch.randint(0, SIZE - SQUARE, (2,), generator=generator))
        images[i, :, top:top + SQUARE, left:left + SQUARE] = colours[labels[i]][:, None, None]
        masks[i, labels[i], top:top + SQUARE, left:left + SQUARE] = True
    return images, labels, masks


def test_superpixels_cover_each_image_once_per_scale() -> None:
    images, _, _ = planted(4)
    segments = ace.superpixels(images, scales=(8, 20), min_share=0.0)
    for index in range(4):
        for scale in (8, 20):
            mine = segments.masks[(segments.image == index) & (segments.scale == scale)]
            assert torch.equal(mine.sum(dim=0), torch.ones(SIZE, SIZE, dtype=torch.long))
    small = ace.superpixels(images, scales=(80,), min_share=0.02)
    assert int(small.masks.flatten(1).sum(dim=1).min()) >= round(0.02 * SIZE * SIZE)


def test_a_segment_is_embedded_as_its_images_map_averaged_over_its_pixels() -> None:
    maps = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).view(2, 3, 4, 4)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :2, :2] = True  # the top-left cell of image 0's 4 x 4 map, exactly
    masks[1, 4:, :] = True  # the bottom half of image 1
    segments = ace.Segments(torch.tensor([0, 1]), masks, torch.tensor([1, 1]))
    embedded = ace.pooled(maps, segments)
    assert torch.allclose(embedded[0], maps[0, :, 0, 0])
    assert torch.allclose(embedded[1], maps[1, :, 2:, :].mean(dim=(1, 2)))


def test_the_probe_changes_no_output_and_its_gradient_is_the_maps_summed() -> None:
    model, images = ColourDetector(), torch.rand(3, 3, SIZE, SIZE)
    probe = SegmentProbe(model, {"detect": model.detect})
    masks = torch.ones(3, SIZE, SIZE)
    assert torch.equal(probe(images, masks), model(images))
    seen: list[torch.Tensor] = []
    handle = probe.means["detect"].register_forward_hook(lambda _m, _i, out: seen.append(out))
    logit = probe(images, masks)[:, 0].sum()
    (gradient,) = torch.autograd.grad(logit, seen[0])
    handle.remove()
    # d logit0 / d (a move of every position of channel 0): the share of positions where it is positive
    active = (model.detect(images)[:, 0] > 0).float().mean(dim=(1, 2))
    assert torch.allclose(gradient[:, 0], active) and torch.all(gradient[:, 1] == 0)


def test_discovery_finds_the_planted_concepts_and_scores_them_through_captum(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[int] = []
    interpret = TCAV.interpret

    def counted(self: TCAV, *args: object, **kwargs: object) -> object:
        calls.append(1)
        return interpret(self, *args, **kwargs)

    monkeypatch.setattr(TCAV, "interpret", counted)
    images, labels, masks = planted()
    model = ColourDetector()
    found = discover_concepts(
        model, lambda batch: batch.float() / 255, images, labels, [0], masks, scales=(8, 16),
        clusters=6, examples=12, min_images=6, random_sets=6, workdir=tmp_path,
    )
    assert calls == [1, 1]  # one Captum call per class
    layer = found.layers[0]
    assert layer.parts is not None and layer.scores is not None
    red = [k for k, (part, share) in enumerate(layer.parts) if part == 1 and share >= 0.9]
    blue = [k for k, (part, share) in enumerate(layer.parts) if part == 2 and share >= 0.9]
    assert red and blue, layer.parts  # a concept on each planted square
    for k, label in [(red[0], 0), (blue[0], 1)]:
        assert layer.classes[k] == (label, 1.0)  # its segments come from its own class only
        assert layer.scores.scores[k, label] == 1.0  # every image of its class: the logit rises along it
        assert layer.scores.scores[k, 1 - label] < 0.5
    count, purity = part_concepts(layer.parts)
    assert count >= 2 and purity is not None and purity >= 0.9
    assert not list(tmp_path.iterdir())  # Captum's activations and CAVs are removed after


def test_discovery_draws_nothing_from_trainings_generators_and_leaves_the_weights() -> None:
    images, labels, _ = planted(16)
    model = ColourDetector()
    before = [p.detach().clone() for p in model.parameters()]
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    discover_concepts(model, lambda batch: batch.float() / 255, images, labels, [0], scales=(8,),
                      clusters=3, examples=6, min_images=2, random_sets=3)
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # its mode restored


def test_own_generators_are_seeded_and_restored() -> None:
    with own_generators(3):
        first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    with own_generators(3):
        assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


@pytest.mark.parametrize("setting", [{"images": 0}, {"random_sets": 1}, {"alpha": 1.5}, {"scales": []}])
def test_out_of_range_settings_are_refused_in_one_line(setting: dict) -> None:
    with pytest.raises(UserError, match=r"insight\.concept_discovery"):
        ConceptDiscovery(**setting)


def test_the_view_logs_every_layer_in_depth_order_at_the_end(runs: dict[str, Path]) -> None:
    tags = _events(runs["default"]).Tags()
    assert "concepts/significant_by_depth" in tags["images"]
    assert "concepts/tcav/text_summary" in tags["tensors"]
    pictures = sorted(tag.split("/")[1] for tag in tags["images"]
                      if tag.startswith("concepts/") and tag.split("/")[1] in LAYERS)
    # numbered, so that TensorBoard sorts them by depth
    assert pictures and pictures == sorted(pictures, key=LAYERS.index)
    events = _events(runs["default"])
    # part purity only where a concept lies on parts (none may in this tiny run: tested above)
    for kind in ("significant", "class_purity", "part_purity"):
        scalars = sorted(t.split("/")[-1] for t in tags["scalars"] if t.startswith(f"concepts/{kind}/"))
        assert set(scalars) <= set(LAYERS)
        if kind == "part_purity":
            continue
        assert set(pictures) <= set(scalars) and scalars, (kind, scalars)
        steps = {event.step for tag in scalars for event in events.Scalars(f"concepts/{kind}/{tag}")}
        assert steps == {EPOCHS}  # once, at the end
