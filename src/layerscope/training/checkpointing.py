"""Checkpoints that survive crashes: atomic writes, exact resumes, a save on SIGINT and SIGTERM.

- :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file in the same folder,
  fsyncs it and renames it over the old one, so a process killed at any moment (SIGKILL, power
  loss) leaves either the previous checkpoint or the new one, never half a file.
- :class:`LastCheckpoint` keeps ``last.ckpt`` the newest state: after every epoch and, for long
  epochs, every N optimizer steps.
- :class:`RandomState` stores the random-number generators in every checkpoint and restores them
  on resume, so augmentation after a resume draws what it would have drawn without the break.
- :class:`SaveOnSignal` turns Ctrl-C and a cluster's pre-emption signal into "finish this training
  step, save ``last.ckpt``, stop", and raises :class:`TrainingInterrupted` saying where it saved.
"""

from __future__ import annotations

import io
import random
import signal
from contextlib import suppress
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn

from layerscope.errors import UserError
from layerscope.files import torch_bytes, write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Serialise in memory, write a temporary file beside the target, fsync, rename, fsync the folder.

    A full disk or an unwritable folder ends in a :class:`UserError` that says so, with the
    temporary file removed and the previous checkpoint untouched.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, torch_bytes(checkpoint))
        except OSError as err:
            kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
            raise UserError(
                f"could not write checkpoint {path} ({err.strerror or err}): free disk space or make the "
                f"folder writable, then run the same command with resume=auto; {kept}"
            ) from err


class LastCheckpoint(L.Callback):
    """Writes ``dirpath/last.ckpt`` after every training epoch and every ``every_n_train_steps`` steps.

    (Lightning's ModelCheckpoint refreshes its ``last.ckpt`` only when the monitored metric
    improves, which leaves a stale file to resume from.)
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 0) -> None:
        if every_n_train_steps < 0:
            raise UserError(
                f"callbacks.last_checkpoint.every_n_train_steps={every_n_train_steps} must be 0 "
                "(epoch ends only) or a number of steps"
            )
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_train_steps = every_n_train_steps
        self._saved_at: int | None = None

    def save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # everything a resume needs
        self._saved_at = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = self.every_n_train_steps
        if n and trainer.global_step % n == 0 and self._saved_at != trainer.global_step:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)


def last_checkpoint(trainer: L.Trainer) -> LastCheckpoint | None:
    """The run's :class:`LastCheckpoint` callback, if it has one."""
    return next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)


def _random_state() -> dict[str, Any]:
    """This process's generator states, as plain lists and tensors."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(state), gauss],
        "numpy": [kind, torch.from_numpy(keys.copy()), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


class RandomState(L.Callback):
    """Saves Python's, NumPy's and torch's (CPU and CUDA) generator states; restores them on resume.

    Under DDP every process's states are saved (``random_state_by_rank``: rank zero writes the
    checkpoint, but each process draws its own augmentation from its own generators, and its GPU's
    generator lives in it alone) and each process gets its own back. Stored as plain lists and
    tensors, so checkpoints still load with ``weights_only=True``.
    """

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Every process saves a checkpoint together (Lightning's rule), so gathering here is safe.
        mine = _random_state()
        checkpoint["random_state"] = mine
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            # Gathered as torch.save bytes: tensors inside gathered objects do not unpickle here.
            buffer = io.BytesIO()
            torch.save(mine, buffer)
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, buffer.getvalue())
            states = [torch.load(io.BytesIO(data), weights_only=True) for data in gathered]
            checkpoint["random_state"], checkpoint["random_state_by_rank"] = states[0], states

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        saved = checkpoint.get("random_state")
        by_rank = checkpoint.get("random_state_by_rank")
        if by_rank and len(by_rank) == trainer.world_size:  # the same number of processes: each its own
            saved = by_rank[trainer.global_rank]
        if saved is None:  # a checkpoint from before this callback existed
            return
        version, state, gauss = saved["python"]
        random.setstate((version, tuple(state), gauss))
        kind, keys, pos, has_gauss, cached = saved["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
        torch.set_rng_state(saved["torch"])
        if saved["cuda"] and torch.cuda.is_available() and len(saved["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved["cuda"])


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving ``checkpoint``; the entry point says how to resume."""

    def __init__(self, signum: int, checkpoint: Path | None, step: int, epoch: int) -> None:
        self.signum, self.checkpoint, self.step, self.epoch = signum, checkpoint, step, epoch
        name = signal.Signals(signum).name
        saved = f"saved {checkpoint}" if checkpoint else "no checkpoint could be saved"
        super().__init__(f"stopped by {name} at step {step} (epoch {epoch}): {saved}")


class SaveOnSignal(L.Callback):
    """On SIGINT (Ctrl-C) or SIGTERM (pre-emption), save ``last.ckpt`` at the end of the step, then stop.

    The handlers only set a flag: the save happens between two training steps, where the model,
    optimizer and data position agree. A second Ctrl-C quits at once without saving. Under DDP the
    ranks agree on the flag every step, so all of them stop at the same step.
    """

    def __init__(self, signals: tuple[str, ...] = ("SIGINT", "SIGTERM")) -> None:
        unknown = [name for name in signals if name not in signal.Signals.__members__]
        if unknown:
            raise UserError(f"callbacks.save_on_signal.signals: {', '.join(unknown)} is not a signal name")
        self.signals = [signal.Signals[name] for name in signals]
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        if signum == signal.SIGINT:  # a second Ctrl-C interrupts at once
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.received = None
        with suppress(ValueError):  # not the main thread: leave the handlers alone
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            with suppress(ValueError, TypeError):
                signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def _pending(self, trainer: L.Trainer) -> int | None:
        received = self.received
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(received is not None, all=False)
            received = (received or signal.SIGTERM) if stop else None
        return received

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._stop_if_signalled(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_signalled(trainer)  # a signal during validation: the epoch is complete now

    def _stop_if_signalled(self, trainer: L.Trainer) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return
        signum = self._pending(trainer)
        if signum is None:
            return
        last = last_checkpoint(trainer)
        if last is not None:
            last.save(trainer)
        path = last.path if last else None
        raise TrainingInterrupted(signum, path, trainer.global_step, trainer.current_epoch)
