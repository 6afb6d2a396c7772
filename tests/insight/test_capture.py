"""Hooks, inspection passes and layer anatomy: looking inside must leave the model as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from layerscope.insight.capture import layer_stats, trace_anatomy
from layerscope.models import MLP, ShallowCNN, cifar_resnet
from layerscope.models.layers import inspection_mode, named_layers


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


def test_resnet_anatomy_receptive_fields_and_parameters() -> None:
    model = cifar_resnet(depth=8, in_channels=3, num_classes=10, image_size=32)
    anatomy = trace_anatomy(model, torch.zeros(1, 3, 32, 32))
    # A 3x3 convolution adds 2 pixels times the jump before it; stride 2 doubles the jump after.
    assert [a.receptive_field for a in anatomy] == [3, 5, 7, 9, 13, 17, 25, 32]
    assert [a.jump for a in anatomy] == [1, 1, 1, 2, 2, 4, 4, 4]
    assert set(anatomy[0].parameters) == {"stem.0.weight", "stem.1.weight", "stem.1.bias"}
    assert set(anatomy[1].parameters) == {
        "stages.0.0.conv1.weight", "stages.0.0.bn1.weight", "stages.0.0.bn1.bias"}
    assert set(anatomy[-1].parameters) == {"fc.weight", "fc.bias"}
    owned = [name for a in anatomy for name in a.parameters]
    assert sorted(owned) == sorted(name for name, _ in model.named_parameters())
    assert anatomy[3].output_shape == (32, 16, 16)
    assert _no_hooks(model)


def test_shallow_and_mlp_anatomy() -> None:
    shallow = trace_anatomy(ShallowCNN([8, 16], 1, 10, 28), torch.zeros(1, 1, 28, 28))
    # conv1 sees 3 pixels; max-pooling (2x2, stride 2) then a 3x3 conv: 3 + 1 + 2*2 = 8.
    assert [a.receptive_field for a in shallow] == [3, 8, 28]
    mlp = trace_anatomy(MLP([32, 16], 1, 10, 28), torch.zeros(1, 1, 28, 28))
    assert [a.receptive_field for a in mlp] == [28, 28, 28]
    assert set(mlp[0].parameters) == {"hidden.0.0.weight", "hidden.0.0.bias"}


def test_inspection_leaves_batchnorm_statistics_mode_and_hooks_alone() -> None:
    model = cifar_resnet(depth=8, in_channels=3, num_classes=10, image_size=16)
    model.train()
    model.stages[0].eval()  # a module the user froze: its own flag must survive too
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats, logits = layer_stats(model, model, torch.randn(20, 3, 16, 16), batch_size=8)
    assert logits.shape == (20, 10)
    assert len(stats) == len(named_layers(model))
    assert stats[0].mean.shape == (20, 16) and stats[0].width == 16
    assert stats[-1].width == 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.training and not model.stages[0].training and model.stages[1].training
    assert _no_hooks(model)


def test_inspection_restores_mode_after_an_error() -> None:
    model = cifar_resnet(depth=8, in_channels=3, num_classes=10, image_size=16).train()
    with pytest.raises(RuntimeError), inspection_mode(model):
        assert not model.training
        raise RuntimeError("boom")
    assert model.training


def test_peak_position_points_at_the_strongest_unit() -> None:
    class Identity(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)

        def named_layers(self) -> list[tuple[str, nn.Module]]:
            return [("layer", self.layer)]

    image = torch.zeros(1, 1, 5, 7)
    image[0, 0, 3, 2] = 4.0
    model = Identity()
    stats, _ = layer_stats(model, model, image, batch_size=1)
    assert stats[0].peak.item() == 4.0
    assert divmod(stats[0].peak_at.item(), stats[0].width) == (3, 2)
