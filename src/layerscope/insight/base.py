"""What every insight view shares: where to write, when to log, and the validation sample.

Epoch views log once before training (step 0: the untrained network) and after every
``every_n_epochs``-th validation epoch with step = epochs done, so TensorBoard's image slider
walks through training. Only the rank-zero process logs; the others do no insight work at all.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.tensorboard import SummaryWriter

from layerscope.insight.capture import LayerStats, layer_stats

log = logging.getLogger(__name__)


def tensorboard_writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The run's TensorBoard writer, or None where no TensorBoard logger is configured."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class EpochView(L.Callback):
    """A view drawn before training and after validation epochs; subclasses implement ``draw``."""

    before_training = True  # step 0 shows the untrained network; views of mistakes skip it

    def __init__(self, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs={every_n_epochs} must be >= 1")
        self.every_n_epochs = every_n_epochs
        self._warned = False

    def _writer(self, trainer: L.Trainer) -> SummaryWriter | None:
        if not trainer.is_global_zero:
            return None
        writer = tensorboard_writer(trainer)
        if writer is None and not self._warned:
            log.warning("%s needs a TensorBoard logger; it logs nothing", type(self).__name__)
            self._warned = True
        return writer

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = self._writer(trainer)
        if writer is not None and self.before_training and trainer.current_epoch == 0:
            self.draw(writer, trainer, pl_module, step=0)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        writer = self._writer(trainer)
        epochs_done = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and 0 < trainer.max_epochs <= epochs_done
        if writer is not None and (epochs_done % self.every_n_epochs == 0 or last):
            self.draw(writer, trainer, pl_module, step=epochs_done)

    def draw(
        self, writer: SummaryWriter, trainer: L.Trainer, pl_module: L.LightningModule, step: int
    ) -> None:
        raise NotImplementedError


# --- the validation sample that probes and top patches look at ----------------------------------
@dataclass
class Sample:
    """The first ``len(labels)`` validation images, and what every layer made of them."""

    images: torch.Tensor  # uint8 (N, C, H, W), as stored
    labels: torch.Tensor  # int64 (N,)
    parts: torch.Tensor | None  # uint8 (N, P) part labels where the data set has them
    stats: list[LayerStats]
    logits: torch.Tensor


# One entry per trainer, dropped with it: a later run can never see an earlier run's sample.
_cache: weakref.WeakKeyDictionary[L.Trainer, tuple[Any, Sample]] = weakref.WeakKeyDictionary()


def validation_sample(
    trainer: L.Trainer, pl_module: L.LightningModule, size: int, batch_size: int = 500
) -> Sample:
    """Run the model over the first ``size`` validation images (at most one pass per step).

    Views that log at the same moment share the pass: the result is kept until the model changes.
    """
    key = (id(pl_module), trainer.global_step, trainer.current_epoch, size)
    cached = _cache.get(trainer)
    if cached is not None and cached[0] == key:
        return cached[1]
    datamodule = trainer.datamodule
    val = datamodule.val
    images, labels = val.images[:size], val.labels[:size]
    parts = None if val.parts is None else val.parts[:size]

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return pl_module(datamodule.preprocess(batch.to(pl_module.device)))

    stats, logits = layer_stats(forward, pl_module.model, images, batch_size)
    sample = Sample(images, labels, parts, stats, logits)
    _cache[trainer] = (key, sample)
    return sample
