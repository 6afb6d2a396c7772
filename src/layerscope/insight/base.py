"""What every insight view shares: where to write and when to log.

Epoch views log once before training (step 0: the untrained network) and after every
``every_n_epochs``-th validation epoch with step = epochs done, so TensorBoard's image slider
walks through training. Only the rank-zero process logs; the others do no insight work at all.
"""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.tensorboard import SummaryWriter

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
        if writer is not None and self.before_training and trainer.global_step == 0:
            self.draw(writer, trainer, pl_module, step=0)

    def _due(self, trainer: L.Trainer) -> int | None:
        """The step to draw at the end of this validation epoch, or None if this one is skipped."""
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or not trainer.is_global_zero:
            return None
        epochs_done = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and 0 < trainer.max_epochs <= epochs_done
        return epochs_done if epochs_done % self.every_n_epochs == 0 or last else None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = self._due(trainer)
        writer = self._writer(trainer) if step is not None else None
        if writer is not None:
            self.draw(writer, trainer, pl_module, step=step)

    def draw(
        self, writer: SummaryWriter, trainer: L.Trainer, pl_module: L.LightningModule, step: int
    ) -> None:
        raise NotImplementedError
