"""The FLOP count of a training step, checked against arithmetic done by hand."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from layerscope.models import cifar_resnet, training_flops_per_image


def test_a_step_counts_the_forward_and_the_backward_products() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    forward = 2 * (4 * 5 + 5 * 3)  # two operations per multiply-add
    # Backward: each layer's weight gradient costs what its forward did; the input gradient too,
    # except the first layer's (nothing asks for the gradient of the images).
    backward = 2 * (4 * 5) + 2 * 2 * (5 * 3)
    assert training_flops_per_image(model, (1, 2, 2), batch=3) == forward + backward == 170


def test_a_resnet_step_costs_about_three_forward_passes_and_leaves_the_model_as_it_was() -> None:
    model = cifar_resnet(depth=20, in_channels=3, num_classes=10).eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(2, 3, 32, 32))
    forward = counter.get_total_flops() / 2
    step = training_flops_per_image(model, (3, 32, 32))
    assert 2.9 * forward < step < 3.0 * forward  # every layer but the first computes an input gradient
    assert not model.training  # counted on a copy: the BatchNorm statistics did not move either
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
