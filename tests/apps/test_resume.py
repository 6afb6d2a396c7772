"""Crash and resume, for real: runs killed or signalled mid-epoch continue bit for bit."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from tests.apps.test_train_cli import run_train
from tests.conftest import TINY_SHAPES

# 512 images in batches of 64: 8 steps per epoch, 16 in all; last.ckpt also every 3 steps.
# In fp32 whatever trainer.precision=auto would choose on this machine; bf16 has its own test below.
RUN = ["debug=fast", *TINY_SHAPES, "model.depth=8", "trainer.max_epochs=2", "insight=off",
       "callbacks.last_checkpoint.every_n_train_steps=3", "trainer.enable_progress_bar=false",
       "trainer.precision=32-true"]
FAULT = "+callbacks.fault._target_=tests.apps.faults.SignalAtStep"


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _assert_same_run(run_dir: Path, reference: Path) -> None:
    expected, got = _weights(reference), _weights(run_dir)
    assert expected.keys() == got.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f"weights differ from the uninterrupted run: {different[:5]}"
    for key in ("test/acc", "test/loss", "val/acc", "epochs", "steps"):
        assert _metrics(run_dir)[key] == _metrics(reference)[key], key


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    data_dir = tmp_path_factory.mktemp("data")
    run_dir = tmp_path_factory.mktemp("runs") / "uninterrupted"
    result = run_train(*RUN, f"hydra.run.dir={run_dir}", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _metrics(run_dir)["steps"] == 16
    return run_dir, data_dir


def test_sigkill_mid_epoch_then_resume_auto_continues_exactly(
    uninterrupted: tuple[Path, Path], tmp_path: Path
) -> None:
    reference, data_dir = uninterrupted
    run_dir = tmp_path / "run"
    crashed = run_train(*RUN, f"hydra.run.dir={run_dir}", FAULT, "+callbacks.fault.step=10",
                        data_dir=data_dir)
    assert crashed.returncode == -9  # SIGKILL: nothing of ours ran after it
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (saved["global_step"], saved["epoch"]) == (9, 1)  # mid-way through the second epoch
    assert not (run_dir / "metrics.json").exists()

    resumed = run_train(*RUN, f"hydra.run.dir={run_dir}", "resume=auto", data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in resumed.stderr + resumed.stdout
    _assert_same_run(run_dir, reference)


def test_a_bf16_run_killed_mid_epoch_resumes_bit_for_bit(tmp_path: Path) -> None:
    # bf16-mixed is what trainer.precision=auto picks on processors with bf16 units: a resumed run
    # must match its uninterrupted twin there too (same precision, same kernels, same order).
    data_dir = tmp_path / "data"
    bf16 = [*RUN, "trainer.precision=bf16-mixed"]
    reference, run_dir = tmp_path / "uninterrupted", tmp_path / "run"
    assert run_train(*bf16, f"hydra.run.dir={reference}", data_dir=data_dir).returncode == 0
    crashed = run_train(*bf16, f"hydra.run.dir={run_dir}", FAULT, "+callbacks.fault.step=10",
                        data_dir=data_dir)
    assert crashed.returncode == -9
    resumed = run_train(*bf16, f"hydra.run.dir={run_dir}", "resume=auto", data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _metrics(run_dir)["precision"] == "bf16-mixed"
    _assert_same_run(run_dir, reference)
    assert _weights(run_dir)["model.fc.weight"].dtype == torch.float32  # fp32 master weights


@pytest.mark.parametrize(("name", "exit_code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_signal_saves_says_how_to_continue_and_that_command_finishes_the_run(
    uninterrupted: tuple[Path, Path], tmp_path: Path, name: str, exit_code: int
) -> None:
    reference, data_dir = uninterrupted
    run_dir = tmp_path / "run"
    stopped = run_train(*RUN, f"hydra.run.dir={run_dir}", FAULT, "+callbacks.fault.step=5",
                        f"+callbacks.fault.signal={name}", data_dir=data_dir)
    assert stopped.returncode == exit_code, stopped.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    # The signal arrives during step 5; that step and the next finish, then last.ckpt is saved.
    assert f"stopped by {name} at step 6 (epoch 0): saved {last}; continue with:" in stopped.stderr
    assert torch.load(last, weights_only=True)["global_step"] == 6

    command = shlex.split(stopped.stderr.strip().splitlines()[-1])
    assert command[:2] == ["python", "train.py"]
    assert command[-2:] == [f"hydra.run.dir={run_dir}", "resume=auto"]
    overrides = [o for o in command[2:] if not o.startswith("+callbacks.fault")]  # the fault fires once
    resumed = run_train(*overrides, data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_run(run_dir, reference)


def test_ckpt_path_continues_into_a_new_run_folder(uninterrupted: tuple[Path, Path], tmp_path: Path) -> None:
    reference, data_dir = uninterrupted
    first = tmp_path / "first"
    stopped = run_train(*RUN, f"hydra.run.dir={first}", FAULT, "+callbacks.fault.step=12",
                        "+callbacks.fault.signal=SIGTERM", data_dir=data_dir)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    second = tmp_path / "second"
    resumed = run_train(*RUN, f"hydra.run.dir={second}", f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}",
                        data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_run(second, reference)


def test_resume_auto_without_a_checkpoint_starts_afresh(
    uninterrupted: tuple[Path, Path], tmp_path: Path
) -> None:
    reference, data_dir = uninterrupted
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / ".last.ckpt.123.abcd.tmp").write_bytes(b"half a checkpoint")
    result = run_train(*RUN, f"hydra.run.dir={run_dir}", "resume=auto", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "yet, starting afresh" in result.stdout + result.stderr
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # the killed save's leftovers are gone
    _assert_same_run(run_dir, reference)  # and the same seed gives the same run


def test_resuming_a_finished_run_only_tests_again(uninterrupted: tuple[Path, Path], tmp_path: Path) -> None:
    reference, data_dir = uninterrupted
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    result = run_train(*RUN, f"hydra.run.dir={run_dir}", "resume=auto", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training:        already finished (2 epochs)" in result.stdout
    assert _metrics(run_dir)["train/img_per_s"] is None
    for key in ("test/acc", "steps", "epochs"):
        assert _metrics(run_dir)[key] == _metrics(reference)[key], key


@pytest.mark.parametrize(("overrides", "message"), [
    (["resume=yes"], "resume=yes is not an option: use resume=auto or leave it out"),
    (["resume=auto", "ckpt_path=x.ckpt"], "give either ckpt_path=... or resume=auto, not both"),
    (["ckpt_path={tmp}/missing.ckpt"], "no checkpoint at {tmp}/missing.ckpt"),
    (["ckpt_path={last}", "model.depth=14"], "was trained with another model or data"),
])
def test_resume_mistakes_are_one_line(
    uninterrupted: tuple[Path, Path], tmp_path: Path, overrides: list[str], message: str
) -> None:
    reference, data_dir = uninterrupted
    fill = {"tmp": tmp_path, "last": reference / "checkpoints" / "last.ckpt"}
    run_dir = tmp_path / "run"
    result = run_train(*RUN, f"hydra.run.dir={run_dir}", *(o.format(**fill) for o in overrides),
                       data_dir=data_dir)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message.format(**fill) in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not run_dir.exists()  # nothing was left behind


def test_same_seed_gives_identical_weights_and_metrics(
    uninterrupted: tuple[Path, Path], tmp_path: Path
) -> None:
    """Reproducible on CPU with deterministic algorithms on; another seed gives another run."""
    reference, data_dir = uninterrupted
    again, other = tmp_path / "again", tmp_path / "other"
    for run_dir, seed in ((again, 42), (other, 7)):
        result = run_train(*RUN, f"hydra.run.dir={run_dir}", "trainer.deterministic=true", f"seed={seed}",
                           data_dir=data_dir)
        assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_run(again, reference)
    assert not torch.equal(_weights(other)["model.fc.weight"], _weights(reference)["model.fc.weight"])

