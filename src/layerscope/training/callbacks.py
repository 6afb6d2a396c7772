"""Callbacks that measure the run (not the model's insides: those live in ``insight``)."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch

from layerscope.errors import UserError
from layerscope.training.checkpointing import last_checkpoint
from layerscope.training.gpu import synchronize


class TrainSpeedMonitor(L.Callback):
    """Training images per second, timed over training steps only (validation excluded).

    Each epoch is timed from its first batch to its last, synchronising the GPU only at those
    two points, so the hot loop gains no host syncs. Under DDP the images are those of every
    process (summed at each epoch's end), so the figure is the whole run's speed, not one
    process's share.
    """

    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self._epoch_start: float | None = None
        self._epoch_images = 0

    def _now(self, trainer: L.Trainer) -> float:
        synchronize(trainer.strategy.root_device)
        return time.perf_counter()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._epoch_start is None:
            self._epoch_start = self._now(trainer)
        self._epoch_images += len(batch[1])

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_epoch(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_epoch(trainer)

    def _close_epoch(self, trainer: L.Trainer) -> None:
        if self._epoch_start is None:  # e.g. the sanity-check validation before training
            return
        self.seconds += self._now(trainer) - self._epoch_start
        images = self._epoch_images
        if trainer.world_size > 1:  # every process closes its epoch here, so the sum is safe
            local = torch.tensor(float(images), device=trainer.strategy.root_device)
            images = int(trainer.strategy.reduce(local, reduce_op="sum").item())
        self.images += images
        self._epoch_start, self._epoch_images = None, 0
        if self.seconds > 0:
            for logger in trainer.loggers:  # TensorBoard, and the CSV or MLflow logger beside it
                logger.log_metrics({"train/img_per_s": self.images_per_second}, trainer.global_step)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


class StopOnNonFiniteLoss(L.Callback):
    """Stops training at the first NaN or infinite training loss, saying where and why.

    Nothing is saved after that step, so the last good checkpoint stays as it was. (The check
    reads the loss on the host each step; the progress bar already does.) Under DDP every process
    learns whether any process's loss went bad (one small all-reduce per step), so all stop at the
    same step instead of the others waiting for the stopped one until the collective times out.
    """

    # The run's time breakdown charges this check to the training steps: on a GPU, reading the
    # loss waits for the step's queued work, which would otherwise be counted as this callback's.
    timing_phase = "training steps"

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        bad = isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all())
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)  # any process
        if not bad:
            return
        value = loss.item() if isinstance(loss, torch.Tensor) else float("nan")
        became = "became NaN or infinite on another process" if math.isfinite(value) else f"became {value}"
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        last = last_checkpoint(trainer)
        saved = last is not None and last.path.exists()
        kept = f"the last good checkpoint is {last.path}" if saved else "none was saved yet"
        raise UserError(
            f"training stopped: the loss {became} at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}), most likely because the learning rate ({lr:.3g} then) is "
            f"too high: lower optimizer.lr and start again; {kept}"
        )
