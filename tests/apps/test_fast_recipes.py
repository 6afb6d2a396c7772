"""Progressive resizing on a tiny run: a run killed mid-epoch resumes bit for bit."""

from __future__ import annotations

from pathlib import Path

from tests.apps.test_resume import FAULT, RUN, _assert_same_run
from tests.apps.test_train_cli import run_train

# Epoch 1 at 16 px, epoch 2 at the full 32: the kill lands in the second, after the size changed.
FAST = [*RUN, "module.train_image_sizes=[16,32]"]


def test_a_progressively_resized_run_killed_mid_epoch_resumes_bit_for_bit(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    reference = tmp_path / "uninterrupted"
    done = run_train(*FAST, f"hydra.run.dir={reference}", data_dir=data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "run"
    crashed = run_train(*FAST, f"hydra.run.dir={run_dir}", FAULT, "+callbacks.fault.step=10",
                        data_dir=data_dir)
    assert crashed.returncode == -9
    resumed = run_train(*FAST, f"hydra.run.dir={run_dir}", "resume=auto", data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_run(run_dir, reference)
