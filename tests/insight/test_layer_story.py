"""The layer story page: which layers it shows, what it holds at step 0 and at the end, where it goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from layerscope.insight.capture import trace_anatomy
from layerscope.insight.layer_story import LayerStory, story_layers
from layerscope.models import cifar_resnet
from tests.insight.conftest import EPOCHS, SMALL_INSIGHT, _train
from tests.insight.test_insight_run import _events


class _Plain(nn.Module):
    """Twelve convolutions in a row, no stages: every layer would be 'readable'."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(*(nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1) for i in range(12)))

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [(f"conv{i + 1}", conv) for i, conv in enumerate(self.convs)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


def test_the_page_shows_layer_one_each_stage_middle_and_the_last_convolution() -> None:
    resnet = trace_anatomy(cifar_resnet(20), torch.zeros(1, 3, 32, 32))
    assert [resnet[i].name for i in story_layers(resnet)] == [
        "stem", "stage1.block2.conv2", "stage2.block2.conv2", "stage3.block2.conv2", "stage3.block3.conv2",
    ]
    plain = trace_anatomy(_Plain(), torch.zeros(1, 3, 16, 16))
    assert story_layers(plain, most=5) == [0, 3, 6, 8, 11]  # evenly spread, the first and the last kept


def test_a_run_writes_the_page_to_its_folder_and_to_tensorboard(runs: dict[str, Path]) -> None:
    page = np.asarray(Image.open(runs["default"] / "layer_story.png").convert("RGB"))
    height, width, _ = page.shape
    # Five columns of 5-tile cells (64-pixel tiles) and the chart row: legible at native size.
    assert width > 1200 and 700 < height < 2000
    assert page.std() > 20  # pictures and charts, not a blank page
    stored = _events(runs["default"]).Images("layer_story")
    assert [(i.step, i.height, i.width) for i in stored] == [(EPOCHS, height, width)]
    assert not (runs["off"] / "layer_story.png").exists()


@pytest.fixture(scope="module")
def moments(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Any]:
    """The moments a run's story holds when training stops before its last epoch (max_steps)."""
    kept: dict[str, Any] = {}
    original = LayerStory.end

    def keep(self: LayerStory, context: Any) -> None:
        original(self, context)
        kept.update(self._moments, anatomy=context.anatomy())

    LayerStory.end = keep  # type: ignore[method-assign]
    try:
        run_dir = tmp_path_factory.mktemp("story-stopped")
        # 12 steps of 100 images: one epoch and a part of the second, then max_steps stops it.
        _train(run_dir, data_dir, "trainer.max_epochs=5", "+trainer.max_steps=12", *SMALL_INSIGHT)
    finally:
        LayerStory.end = original  # type: ignore[method-assign]
    kept["run_dir"] = run_dir
    return kept


def test_the_page_holds_step_zero_and_the_network_where_training_stopped(moments: dict[str, Any]) -> None:
    start, end = moments["start"], moments["end"]
    assert (start.step, end.step) == (0, 2)  # stopped during epoch 2 (Lightning counts it): drawn as it is
    shown = story_layers(moments["anatomy"])
    assert sorted(start.channels) == sorted(end.channels) == shown
    # Two channels per layer, each its optimised image then 4 patches, as 64-pixel tiles.
    assert {tuple(p.shape) for p in start.channels.values()} == {(3, 2 + 2 * 66, 2 + 5 * 66)}
    # Step 0 was dissected and probed at step 0; the end was not dissected at its own step, so
    # the page shows no best unit for it rather than one measured on other weights.
    assert start.dissection.step == 0 and start.probes.step == 0
    assert sorted(start.detectors) == shown
    assert all("IoU" in caption and "of its units" in caption for _, caption in start.detectors.values())
    # The best unit is one of shapes' own concepts (edge, part, object), never a joined colour,
    # though colour units overlap their masks best at step 0 (the chart's colour line).
    assert not any("(colour)" in caption for _, caption in start.detectors.values())
    assert any(kind in caption for _, caption in start.detectors.values() for kind in ("(edge)", "(object)"))
    assert end.dissection is None and end.detectors == {}
    assert (moments["run_dir"] / "layer_story.png").exists()
