"""Reading a run's scalars back from its event files, as the notebooks and benchmarks do."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

import layerscope
from layerscope.errors import UserError
from layerscope.training.logged import logged_scalars


def _write(folder: Path, scalars: dict[str, list[tuple[int, float]]]) -> Path:
    writer = SummaryWriter(str(folder))
    for tag, points in scalars.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()
    (file,) = folder.glob("events.out.tfevents.*")
    return file


def test_scalars_come_back_in_step_order_and_a_resumed_run_overrides_the_steps_it_repeats(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    first = _write(run / "tensorboard" / "a", {"train/loss": [(0, 2.0), (1, 1.5), (2, 1.2)],
                                               "probe/class/01_conv": [(0, 0.1)]})
    os.utime(first, (1_000_000_000, 1_000_000_000))  # written before the resumed run's file
    _write(run / "tensorboard" / "b", {"train/loss": [(3, 0.9), (2, 1.1)]})  # resumed from step 2
    assert logged_scalars(run) == {
        "probe/class/01_conv": [(0, pytest.approx(0.1))],
        "train/loss": [(0, 2.0), (1, 1.5), (2, pytest.approx(1.1)), (3, pytest.approx(0.9))],
    }
    assert list(layerscope.logged_scalars(run, r"probe/class/\d+_.*")) == ["probe/class/01_conv"]
    assert logged_scalars(run, "train") == {}  # the whole tag must match


def test_a_folder_without_event_files_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no TensorBoard event files under .*: give a run folder"):
        logged_scalars(tmp_path)
