"""Averages of the weights as Lightning callbacks, for screening those ideas only.

Two ways to average what gradient descent visits, both from the fast-training record recipes:

- ``EvalEMA``: an exponential moving average of the weights and BatchNorm statistics (Page's
  ResNet-9 series, 2018; Polyak averaging). Training never sees it: validation, the checkpoints'
  weights and so the test use the average.
- ``Lookahead``: every ``every`` steps the network is pulled back toward slow weights that
  follow it (Zhang et al. 2019), as Keller Jordan's airbench94 (2024) does: the slow weights'
  decay grows from 0 to 0.95**5 with the cube of the run's progress, training continues from the
  slow weights, and the run ends on them. airbench pairs it with fast BatchNorm statistics
  (``bn_momentum``; PyTorch's momentum, 0.4 there).

Neither is part of the package. A run with either cannot be resumed exactly (last.ckpt holds the
averaged weights, not the ones training continues from). Run them through ``recipe_sweep.py``
with this folder on the path:

    PYTHONPATH=benchmarks python benchmarks/recipe_sweep.py --seeds 1 2 --common "insight=off" \\
        --recipe "base: model=deep" \\
        --recipe "ema: +callbacks.ema._target_=weight_averaging.EvalEMA +callbacks.ema.decay=0.99" \\
        --recipe "lookahead: +callbacks.la._target_=weight_averaging.Lookahead"
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn


def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's floating-point parameters and buffers, by name (the integer batch counters left out)."""
    return {name: t for name, t in model.state_dict(keep_vars=True).items() if t.is_floating_point()}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of :func:`float_state`, detached from the model."""
    return {name: t.detach().clone() for name, t in float_state(model).items()}


class EvalEMA(L.Callback):
    """An exponential moving average of ``pl_module.model``'s weights for evaluation.

    ``decay`` per optimizer step, warmed up as ``min(decay, (1 + n) / (10 + n))`` after ``n``
    updates (as timm's ModelEmaV3), so that the first epoch's average is not mostly the
    initialisation.
    """

    def __init__(self, decay: float = 0.99) -> None:
        self.decay = decay
        self.updates = 0
        self.average: dict[str, torch.Tensor] = {}
        self._training_state: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.average = snapshot(pl_module.model)

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, t in float_state(pl_module.model).items():
            self.average[name].lerp_(t.detach(), 1 - decay)

    @torch.no_grad()
    def _load(self, pl_module: L.LightningModule, state: dict[str, torch.Tensor]) -> None:
        for name, t in float_state(pl_module.model).items():
            t.data.copy_(state[name])

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._training_state = snapshot(pl_module.model)
            self._load(pl_module, self.average)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._training_state:
            self._load(pl_module, self._training_state)
            self._training_state = {}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for name, t in self.average.items():
            state[f"model.{name}"] = t.detach().clone()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._load(pl_module, self.average)


class Lookahead(L.Callback):
    """airbench94's lookahead: every ``every`` steps, slow <- slow + (1 - d) (fast - slow), fast <- slow,
    with ``d = peak * progress**3``; at the last step the network takes the slow weights."""

    def __init__(self, every: int = 5, peak: float = 0.95**5, bn_momentum: float | None = None) -> None:
        self.every, self.peak, self.bn_momentum = every, peak, bn_momentum
        self.slow: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.slow = snapshot(pl_module.model)
        if self.bn_momentum is not None:
            for module in pl_module.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = self.bn_momentum

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step, total = trainer.global_step, int(trainer.estimated_stepping_batches)
        if step >= total:
            decay = 1.0
        elif step % self.every == 0:
            decay = self.peak * (step / total) ** 3
        else:
            return
        for name, t in float_state(pl_module.model).items():
            self.slow[name].lerp_(t.detach(), 1 - decay)
            t.data.copy_(self.slow[name])
