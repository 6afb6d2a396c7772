"""How much arithmetic one training step costs a model, counted by torch's FLOP counter."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def training_flops_per_image(model: nn.Module, input_shape: tuple[int, ...], batch: int = 2) -> float:
    """Operations of one training step's forward and backward pass, per image.

    ``input_shape`` is one image's (channels, height, width). The count is torch's
    ``FlopCounterMode``: two per multiply-add of the convolutions and matrix products, forward and
    backward; element-wise work (activations, normalisation, the optimizer) is not counted. It runs
    on a copy, so that the model's BatchNorm statistics and gradients stay as they were.
    """
    counted = copy.deepcopy(model).train()  # train mode: what a training step runs, dropout included
    device = next(counted.parameters(), torch.empty(0)).device
    images = torch.randn(batch, *input_shape, device=device)
    with FlopCounterMode(display=False) as counter:
        logits = counted(images)
        F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long, device=device)).backward()
    return counter.get_total_flops() / batch
