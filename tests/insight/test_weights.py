"""Weights and gradients: histograms and norms never fail on non-finite gradients (fp16 overflow)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from layerscope.insight.capture import trace_anatomy
from layerscope.insight.weights import WeightsAndGradients


class _TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [("conv", self.conv), ("fc", self.fc)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_non_finite_gradients_are_left_out_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As under fp16 when the loss scale overflows: the hook sees inf and NaN gradients."""
    model = _TwoLayers()
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    model.conv.weight.grad[0, 0, 0, 0] = float("inf")
    model.conv.bias.grad[1] = float("nan")
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = SimpleNamespace(is_global_zero=True, global_step=0, loggers=[logger], current_epoch=0)
    view = WeightsAndGradients(every_n_steps=1)
    view._anatomy = trace_anatomy(model, torch.randn(1, 1, 8, 8))
    with caplog.at_level(logging.WARNING, logger="layerscope.insight.weights"):
        for step in range(2):  # the same non-finite gradients twice: one warning
            trainer.global_step = step
            view.on_before_optimizer_step(trainer, SimpleNamespace(), None)
            view.on_train_batch_end(trainer, SimpleNamespace(), None, None, 0)
        view.on_train_epoch_end(trainer, SimpleNamespace())
    logger.experiment.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    histograms, scalars = events.Tags()["histograms"], events.Tags()["scalars"]
    assert "weights/01_conv" in histograms and "weight_gradients/02_fc" in histograms
    assert "weight_gradients/01_conv" not in histograms and "bias_gradients/01_conv" not in histograms
    assert "grad_norm/02_fc" in scalars and "grad_norm/01_conv" not in scalars
    assert [e.value for e in events.Scalars("gradients/non_finite_layers")] == [1.0, 1.0]
    assert "gradients/norm_by_depth" in events.Tags()["images"]
    assert len(caplog.records) == 1 and "1 layer(s) were not finite" in caplog.records[0].getMessage()
