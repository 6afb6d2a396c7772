"""PhaseTimer: each second charged once, to the phase of the innermost open action."""

from __future__ import annotations

import time
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from layerscope.insight.filters import LayerFilters
from layerscope.training.timing import PHASES, PhaseTimer, breakdown_line


def sleep_in(timer: PhaseTimer, action: str, seconds: float) -> None:
    timer.profiler.start(action)
    time.sleep(seconds)
    timer.profiler.stop(action)


def test_time_goes_to_the_innermost_action_and_the_running_loop(tmp_path) -> None:
    timer = PhaseTimer()
    checkpoint, filters = ModelCheckpoint(dirpath=tmp_path), LayerFilters()
    timer.setup(SimpleNamespace(callbacks=[checkpoint, filters, timer]), None, "fit")
    timer.profiler.start("run_training_epoch")
    sleep_in(timer, "[_TrainingEpochLoop].train_dataloader_next", 0.02)
    sleep_in(timer, "[Strategy]SingleDeviceStrategy.training_step", 0.05)
    sleep_in(timer, f"[Callback]{checkpoint.state_key}.on_train_epoch_end", 0.03)
    timer.on_validation_start(None, None)
    sleep_in(timer, "[Strategy]SingleDeviceStrategy.validation_step", 0.04)
    sleep_in(timer, f"[Callback]{filters.state_key}.on_validation_epoch_end", 0.06)
    timer.on_validation_end(None, None)
    timer.profiler.stop("run_training_epoch")
    with timer.phase("test"):
        time.sleep(0.01)
        timer.on_test_start(None, None)
        sleep_in(timer, "[Strategy]SingleDeviceStrategy.test_step", 0.02)
        timer.on_test_end(None, None)

    seconds = timer.seconds(total=1.0)
    assert list(seconds) == list(PHASES)
    expected = {"batches": 0.02, "training steps": 0.05, "checkpoints": 0.03, "validation": 0.04,
                "insight": 0.06, "test": 0.03}
    for phase, value in expected.items():
        assert seconds[phase] == pytest.approx(value, abs=0.015), (phase, seconds)
    # What the actions leave of the total is "other"; nothing is counted twice.
    assert sum(seconds.values()) == pytest.approx(1.0, abs=0.011)
    with pytest.raises(ValueError, match="unknown phase"):
        timer.add("lunch", 1.0)


def test_breakdown_line_lists_the_largest_phase_first() -> None:
    line = breakdown_line({"test": 1.0, "training steps": 8.0, "insight": 1.0, "other": 0.0})
    assert line.startswith("training steps 8.0 s (80%)") and "other" not in line


class _SlowValidation(L.LightningModule):
    """One weight; each validation step sleeps, so validation time is known."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return (self.weight * batch).sum()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        time.sleep(0.1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_real_trainer_charges_the_sanity_check_and_validation_to_validation(tmp_path) -> None:
    timer = PhaseTimer()
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                        num_sanity_val_steps=1, callbacks=[timer], profiler=timer.profiler, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    batches = torch.utils.data.DataLoader(torch.ones(4, 1), batch_size=2)
    trainer.fit(_SlowValidation(), train_dataloaders=batches, val_dataloaders=batches)
    seconds = timer.seconds(total=0.0)
    # Two validation steps of 0.1 s: the sanity check's and the epoch's.
    assert 0.2 <= seconds["validation"] < 0.35, seconds
    assert seconds["training steps"] < 0.2, seconds
