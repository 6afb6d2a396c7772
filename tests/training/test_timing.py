"""PhaseTimer: each second charged once, to the phase of the innermost open action.

A hand-advanced clock stands in for the wall clock, so the sums are exact however busy the machine.
"""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from layerscope.insight import Insight
from layerscope.insight.filters import LayerFilters
from layerscope.training.timing import PHASES, PhaseTimer, breakdown_line


class HandClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def spend_in(timer: PhaseTimer, action: str, seconds: float) -> None:
    timer.profiler.start(action)
    timer.clock.advance(seconds)
    timer.profiler.stop(action)


def test_time_goes_to_the_innermost_action_and_the_running_loop(tmp_path) -> None:
    timer = PhaseTimer(clock=HandClock())
    checkpoint, insight = ModelCheckpoint(dirpath=tmp_path), Insight(filters=LayerFilters())
    timer.setup(SimpleNamespace(callbacks=[checkpoint, insight, timer]), None, "fit")
    timer.profiler.start("run_training_epoch")
    timer.clock.advance(0.5)  # the epoch loop's own time, outside every inner action
    spend_in(timer, "[_TrainingEpochLoop].train_dataloader_next", 0.02)
    spend_in(timer, "[Strategy]SingleDeviceStrategy.training_step", 0.05)
    spend_in(timer, f"[Callback]{checkpoint.state_key}.on_train_epoch_end", 0.03)
    timer.on_validation_start(None, None)
    spend_in(timer, "[Strategy]SingleDeviceStrategy.validation_step", 0.04)
    spend_in(timer, f"[Callback]{insight.state_key}.on_validation_epoch_end", 0.06)
    timer.on_validation_end(None, None)
    timer.profiler.stop("run_training_epoch")
    timer.clock.advance(0.07)  # outside every action and every phase: "other"
    with timer.phase("test"):
        timer.clock.advance(0.01)
        timer.on_test_start(None, None)
        spend_in(timer, "[Strategy]SingleDeviceStrategy.test_step", 0.02)
        timer.on_test_end(None, None)

    seconds = timer.seconds(total=1.0)
    assert list(seconds) == list(PHASES)
    expected = {"batches": 0.02, "training steps": 0.55, "checkpoints": 0.03, "validation": 0.04,
                "insight": 0.06, "test": 0.03}
    for phase, value in expected.items():
        assert seconds[phase] == pytest.approx(value), (phase, seconds)
    # What the actions leave of the total is "other"; nothing is counted twice.
    assert seconds["other"] == pytest.approx(1.0 - 0.73)
    assert sum(seconds.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown phase"):
        timer.add("lunch", 1.0)


def test_a_phase_is_charged_only_what_the_actions_inside_it_did_not_take() -> None:
    timer = PhaseTimer(clock=HandClock())
    with timer.phase("building"):
        timer.clock.advance(0.3)
        with timer.phase("data set-up"):  # phases nest: the inner one is not charged twice
            timer.clock.advance(0.2)
        spend_in(timer, "[Strategy]SingleDeviceStrategy.training_step", 0.4)
    seconds = timer.seconds(total=0.0)
    assert seconds["building"] == pytest.approx(0.3), seconds
    assert seconds["data set-up"] == pytest.approx(0.2), seconds
    assert seconds["training steps"] == pytest.approx(0.4), seconds
    assert sum(seconds.values()) == pytest.approx(0.9)


def test_breakdown_line_lists_the_largest_phase_first() -> None:
    line = breakdown_line({"test": 1.0, "training steps": 8.0, "insight": 1.0, "other": 0.0})
    assert line.startswith("training steps 8.0 s (80%)") and "other" not in line


class _ClockedModule(L.LightningModule):
    """One weight; each step advances the timer's clock by a known amount."""

    def __init__(self, clock: HandClock) -> None:
        super().__init__()
        self.clock = clock
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.clock.advance(0.01)
        return (self.weight * batch).sum()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.clock.advance(0.1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_real_trainer_charges_the_sanity_check_and_validation_to_validation(tmp_path) -> None:
    clock = HandClock()
    timer = PhaseTimer(clock=clock)
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                        num_sanity_val_steps=1, callbacks=[timer], profiler=timer.profiler, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    batches = torch.utils.data.DataLoader(torch.ones(4, 1), batch_size=2)
    trainer.fit(_ClockedModule(clock), train_dataloaders=batches, val_dataloaders=batches)
    seconds = timer.seconds(total=0.0)
    # Two validation steps of 0.1 s (the sanity check's and the epoch's), two training steps of 0.01 s.
    assert seconds["validation"] == pytest.approx(0.2), seconds
    assert seconds["training steps"] == pytest.approx(0.02), seconds
    assert sum(seconds.values()) == pytest.approx(0.22), seconds


def test_the_non_finite_loss_check_is_charged_to_the_training_steps() -> None:
    """On a GPU its loss read waits for the step's queued work: that time belongs to the step."""
    from layerscope.training.callbacks import StopOnNonFiniteLoss

    timer, check = PhaseTimer(clock=HandClock()), StopOnNonFiniteLoss()
    timer.setup(SimpleNamespace(callbacks=[check, timer]), None, "fit")
    spend_in(timer, "[Strategy]SingleDeviceStrategy.training_step", 0.25)
    spend_in(timer, f"[Callback]{check.state_key}.on_train_batch_end", 0.5)
    seconds = timer.seconds(total=0.75)
    assert seconds["training steps"] == pytest.approx(0.75) and seconds["other"] == 0
