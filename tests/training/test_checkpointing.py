"""Checkpoint writes that survive SIGKILL and full disks; random state that survives a resume."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from layerscope.errors import UserError
from layerscope.files import TEMPORARY_SUFFIX, remove_unfinished
from layerscope.training.checkpointing import AtomicCheckpointIO, RandomState
from tests.conftest import REPO

# A child that writes two ~16 MB checkpoints in turn, as fast as it can: its time goes into the
# writes themselves, so a kill at a random moment lands inside one.
SAVER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from layerscope.files import torch_bytes, write_atomically  # what AtomicCheckpointIO writes with
    path, atomic = Path(sys.argv[1]), sys.argv[2] == "atomic"
    payloads = [torch_bytes({"step": s, "weights": torch.full((4_000_000,), float(s))}) for s in (1, 2)]
    for step in range(10**9):
        data = payloads[step % 2]
        if atomic:
            write_atomically(path, data)
        else:
            path.write_bytes(data)  # what a plain torch.save(checkpoint, path) does to the file
        if step == 0:
            print("saved", flush=True)
""")


def _kill_while_saving(tmp_path: Path, atomic: bool, kills: int) -> tuple[int, int]:
    """Kill the saver ``kills`` times at random moments; returns (unloadable files, kills mid-save)."""
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    path = tmp_path / "last.ckpt"
    delays = random.Random(0)
    unloadable = mid_save = 0
    for _ in range(kills):
        child = subprocess.Popen(
            [sys.executable, str(script), str(path), "atomic" if atomic else "plain"],
            stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        assert child.stdout is not None and child.stdout.readline() == "saved\n"
        time.sleep(delays.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        child.wait()
        mid_save += bool(remove_unfinished(tmp_path))  # a temporary file left: killed inside a save
        try:
            checkpoint = torch.load(path, weights_only=True)
            assert torch.equal(checkpoint["weights"], torch.full((4_000_000,), float(checkpoint["step"])))
        except Exception:
            unloadable += 1
    return unloadable, mid_save


def test_sigkill_at_any_moment_leaves_a_complete_checkpoint(tmp_path: Path) -> None:
    unloadable, mid_save = _kill_while_saving(tmp_path, atomic=True, kills=12)
    assert unloadable == 0
    assert mid_save >= 4, "too few kills landed inside a save for this test to mean anything"
    assert not list(tmp_path.glob(f"*{TEMPORARY_SUFFIX}"))


def test_the_same_kills_break_a_plain_torch_save(tmp_path: Path) -> None:
    """The fault is real: without the temporary file and rename, the kills leave broken files."""
    unloadable, _ = _kill_while_saving(tmp_path, atomic=False, kills=12)
    assert unloadable >= 1


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys, torch
    from layerscope.training.checkpointing import AtomicCheckpointIO
    from layerscope.errors import UserError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "weights": torch.ones(1000)}, sys.argv[1])
    try:
        io.save_checkpoint({"step": 2, "weights": torch.ones(1_000_000)}, sys.argv[1])
    except UserError as err:
        print(err)
""")


def test_a_failing_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    script = tmp_path / "full.py"
    script.write_text(FULL_DISK)
    path = tmp_path / "checkpoints" / "last.ckpt"
    result = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    message = result.stdout.strip()
    assert message.startswith(f"could not write checkpoint {path} (File too large)")
    assert "resume=auto" in message and "the previous last.ckpt is intact" in message
    assert torch.load(path, weights_only=True)["step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left


def test_an_unwritable_folder_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UserError, match=r"could not write checkpoint .*a-file/last.ckpt \(.*\): free disk"):
        AtomicCheckpointIO().save_checkpoint({"step": 1}, tmp_path / "a-file" / "last.ckpt")


def test_random_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    callback, checkpoint = RandomState(), {}
    trainer = SimpleNamespace(world_size=1, global_rank=0)  # one process: its own states, as before
    callback.on_save_checkpoint(trainer, None, checkpoint)  # type: ignore[arg-type]
    assert "random_state_by_rank" not in checkpoint
    expected = (random.random(), np.random.rand(), torch.rand(3))
    torch.save(checkpoint, tmp_path / "state.ckpt")
    loaded = torch.load(tmp_path / "state.ckpt", weights_only=True)
    random.random(), np.random.rand(), torch.rand(3)  # move every generator on
    callback.on_load_checkpoint(trainer, None, loaded)  # type: ignore[arg-type]
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])
