"""Faults injected into real training runs: a callback that sends its own process a signal."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import lightning as L
import torch


class SignalAtStep(L.Callback):
    """Sends ``signal`` to this process right after optimizer step ``step`` (a crash or a pre-emption).

    With ``rank`` set, only that DDP rank is signalled (as when one node is pre-empted).
    """

    def __init__(self, step: int, signal: str = "SIGKILL", rank: int | None = None) -> None:
        self.step = step
        self.signum = getattr(signal_module, signal)
        self.rank = rank
        self.sent = False

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step and not self.sent and self.rank in (None, trainer.global_rank):
            self.sent = True
            os.kill(os.getpid(), self.signum)


signal_module = signal


class DivergeRanks(L.Callback):
    """Draws one extra random number on every rank but zero at each training step, so the ranks'
    random streams (their augmentation) differ, as they do on GPUs, where each has its own generator."""

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_rank > 0:
            torch.rand(1)


class PauseAtStep(L.Callback):
    """After optimizer step ``step``, creates the file ``ready`` and waits (up to ``seconds``): a run
    caught mid-training, for as long as a test needs another process to meet it there."""

    def __init__(self, step: int, ready: str, seconds: float = 300.0) -> None:
        self.step, self.ready, self.seconds = step, ready, seconds

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            with open(self.ready, "w") as file:
                file.write(str(os.getpid()))
            time.sleep(self.seconds)
