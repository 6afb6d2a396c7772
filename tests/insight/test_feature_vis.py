"""Feature visualisation: the optimised image excites its channel, and nothing else changes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from layerscope.errors import UserError
from layerscope.insight.capture import trace_anatomy
from layerscope.insight.feature_vis import (
    FeatureVisualisation,
    feature_images,
    readable_layers,
    visualise,
    warp,
)
from layerscope.models.resnet import cifar_resnet
from layerscope.models.shallow import ShallowCNN
from tests.insight.conftest import EPOCHS

HORIZONTAL_EDGE = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]])


class _EdgeDetectors(nn.Module):
    """One layer of two fixed 3x3 filters: channel 0 finds horizontal edges, channel 1 vertical ones."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.stack([HORIZONTAL_EDGE, HORIZONTAL_EDGE.T])[:, None])
        self.norm = nn.BatchNorm2d(2)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.norm(self.conv(x)))

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [("edges", self.relu)]


def _visualise(net: nn.Module, steps: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return visualise(net, net, [(0, 0), (0, 1)], (1, 32, 32), steps, 0.05, generator)


def _differences(image: torch.Tensor) -> tuple[float, float]:
    """Mean absolute change from row to row and from column to column."""
    return float((image[1:] - image[:-1]).abs().mean()), float((image[:, 1:] - image[:, :-1]).abs().mean())


def test_the_optimised_image_excites_its_channel_and_shows_its_orientation() -> None:
    net = _EdgeDetectors()
    noise, optimised = _visualise(net, steps=0), _visualise(net, steps=64)
    with torch.no_grad():
        net.eval()
        before, after = net(noise), net(optimised)
    for channel in (0, 1):
        assert after[channel, channel].mean() > 10 * before[channel, channel].mean()  # 0.62 vs 0.05
    # Stripes across the filter's edge: the horizontal-edge image changes from row to row far more
    # than from column to column, the vertical-edge image the other way round.
    across_rows, across_cols = _differences(optimised[0, 0])
    assert across_rows > 1.5 * across_cols
    across_rows, across_cols = _differences(optimised[1, 0])
    assert across_cols > 1.5 * across_rows


def test_a_channel_switched_off_by_its_relu_is_switched_on() -> None:
    net = _EdgeDetectors()
    with torch.no_grad():
        net.norm.bias.fill_(-1.6)  # off for grey noise (its strongest response, at the border, is 1.5)
    noise, optimised = _visualise(net, steps=0), _visualise(net, steps=64)
    with torch.no_grad():
        net.eval()
        assert net(noise).max() == 0
        assert net(optimised)[0, 0].mean() > 0.005  # 0.013; with no gradient through the ReLU it stays 0


def test_only_the_image_changes_and_the_global_generator_is_not_drawn_from() -> None:
    net = _EdgeDetectors().train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    first = _visualise(net, steps=3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(m.training for m in net.modules())  # modes restored (BatchNorm ran in eval mode)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())  # running stats too
    assert all(p.grad is None for p in net.parameters())
    assert not any(m._forward_hooks for m in net.modules())
    assert torch.equal(first, _visualise(net, steps=3))  # its own seeded generator: the same again
    assert not torch.equal(first, _visualise(net, steps=3, seed=1))


def test_warp_with_the_identity_returns_the_image() -> None:
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(2, 2, 3)
    assert torch.allclose(warp(images, identity), images, atol=1e-5)
    shift_one_pixel = identity.clone()
    shift_one_pixel[:, 0, 2] = 2 / 8  # sample one pixel to the right
    assert torch.allclose(warp(images, shift_one_pixel)[..., :-1], images[..., 1:], atol=1e-5)


def test_readable_layers_are_layer_one_each_stage_middle_and_the_last_convolution() -> None:
    resnet = trace_anatomy(cifar_resnet(20), torch.zeros(1, 3, 32, 32))
    assert [resnet[i].name for i in readable_layers(resnet)] == [
        "stem", "stage1.block2.conv2", "stage2.block2.conv2", "stage3.block2.conv2", "stage3.block3.conv2",
    ]
    shallow = trace_anatomy(ShallowCNN(), torch.zeros(1, 3, 32, 32))
    assert [shallow[i].name for i in readable_layers(shallow)] == ["conv1", "conv2", "conv3"]


def test_configured_layers_outside_the_model_are_refused_in_one_line() -> None:
    anatomy = trace_anatomy(cifar_resnet(8), torch.zeros(1, 3, 32, 32))
    assert FeatureVisualisation(layers=[8, 1])._shown_layers(anatomy) == [0, 7]
    with pytest.raises(UserError, match=r"has \[0, 9\]: this model has layers 1 to 8") as error:
        FeatureVisualisation(layers=[0, 9])._shown_layers(anatomy)
    assert "\n" not in str(error.value)


def test_a_run_logs_each_readable_layer_at_step_zero_and_every_epoch(runs: dict[str, Path]) -> None:
    events = EventAccumulator(str(runs["default"] / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = sorted(t for t in events.Tags()["images"] if t.startswith("feature_vis/"))
    assert tags == [f"feature_vis/{layer}" for layer in
                    ("01_stem", "03_stage1.block1.conv2", "05_stage2.block1.conv2", "07_stage3.block1.conv2")]
    for tag in tags:
        pictures = events.Images(tag)
        assert [p.step for p in pictures] == list(range(EPOCHS + 1))
        # 4 channels, each its 64-pixel image (32 px zoomed twice) and 6 top patches at the same size.
        assert {(p.height, p.width) for p in pictures} == {(2 + 4 * 66, 2 + 7 * 66)}


def test_an_image_size_the_model_cannot_take_is_refused_in_one_line(data_dir: Path) -> None:
    from tests.data.test_datamodule import make
    from tests.insight.test_dissection import _Classifier, _Linear

    data = make(data_dir)
    data.setup()
    trainer, module = SimpleNamespace(datamodule=data), _Classifier(_Linear())  # fc over 32 x 32 pixels
    assert feature_images(trainer, module, [(0, 1)], steps=2).shape == (1, 3, 32, 32)
    with pytest.raises(UserError, match=r"image_size=48: this model does not run on 48 x 48 images") as error:
        feature_images(trainer, module, [(0, 1)], steps=2, image_size=48)
    assert "\n" not in str(error.value) and "image_size=null" in str(error.value)
