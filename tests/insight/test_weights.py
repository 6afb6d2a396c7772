"""Weights and gradients: histograms and norms never fail on non-finite gradients (fp16 overflow)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from layerscope.insight.base import Context
from layerscope.insight.capture import trace_anatomy
from layerscope.insight.weights import WeightsAndGradients, log_histogram


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
    context = Context(trainer, SimpleNamespace(), logger.experiment, step=0)
    with caplog.at_level(logging.WARNING, logger="layerscope.insight.weights"):
        for step in range(2):  # the same non-finite gradients twice: one warning
            trainer.global_step = step
            view.before_optimizer_step(context)
            view.after_train_batch(context)
        context.step = 1
        view.after_train_epoch(context)
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


def test_histograms_count_every_value_in_its_bucket(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, name="", version="")
    values = torch.tensor([[-1.0, -0.9, 0.0], [0.1, 0.95, 1.0]])
    log_histogram(logger.experiment, "h/spread", values, step=3, bins=4)
    log_histogram(logger.experiment, "h/constant", torch.full((5,), 2.0), step=3, bins=4)
    logger.experiment.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0})
    events.Reload()
    spread = events.Histograms("h/spread")[0]
    assert spread.step == 3
    value = spread.histogram_value
    assert (value.min, value.max, value.num) == (-1.0, 1.0, 6)
    assert value.sum == pytest.approx(0.15, abs=1e-6)
    assert value.sum_squares == pytest.approx(3.7225)
    # Buckets of width 0.5 from -1, closed on the left as NumPy's (the last also on the right):
    # [-1, -0.5) holds two values, [-0.5, 0) none, [0, 0.5) two, [0.5, 1] two.
    assert value.bucket_limit == pytest.approx([-1.0, -0.5, 0.0, 0.5, 1.0])
    assert value.bucket == [0.0, 2.0, 0.0, 2.0, 2.0]
    assert value.bucket[1:] == np.histogram(values.numpy(), bins=4)[0].tolist()
    constant = events.Histograms("h/constant")[0].histogram_value
    assert (constant.min, constant.num, sum(constant.bucket)) == (2.0, 5, 5.0)
