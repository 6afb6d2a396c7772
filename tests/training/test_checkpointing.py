"""Checkpoint writes that survive SIGKILL and full disks; random state that survives a resume."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from layerscope.errors import UserError
from layerscope.files import TEMPORARY_SUFFIX, remove_unfinished
from layerscope.training.checkpointing import AtomicCheckpointIO, RandomState
from tests.conftest import REPO

# A child that saves checkpoint 1, then dies by SIGKILL at one step of saving checkpoint 2: halfway
# through writing the bytes, after they are on disk but before the rename, or after the rename but
# before the folder is synced. The kill is injected, not timed, so every step is hit on every machine.
SAVER = textwrap.dedent("""
    import os, signal, sys, torch
    from pathlib import Path
    from layerscope import files  # what AtomicCheckpointIO writes with
    path, how, step = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    class HalfThenDie:
        \"\"\"A file whose one write puts the first half of the bytes on disk, then the process dies.\"\"\"
        def __init__(self, file):
            self.file = file
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.file.close()
        def write(self, data):
            self.file.write(data[: len(data) // 2])
            self.file.flush()
            os.fsync(self.file.fileno())
            die()

    class DyingOs:
        \"\"\"``os`` as files.write_atomically sees it, with the process killed at step ``step``.\"\"\"
        def __getattr__(self, name):
            return getattr(os, name)
        def fdopen(self, fd, mode):
            file = os.fdopen(fd, mode)
            return HalfThenDie(file) if step == "mid-write" else file
        def replace(self, src, dst):
            if step == "before-rename":
                die()
            os.replace(src, dst)
            if step == "after-rename":
                die()

    def checkpoint(s):
        return files.torch_bytes({"step": s, "weights": torch.full((1_000_000,), float(s))})

    files.write_atomically(path, checkpoint(1))
    if how == "atomic":
        files.os = DyingOs()
        files.write_atomically(path, checkpoint(2))
    else:  # what a plain torch.save(checkpoint, path) does: the old file is truncated, then written
        with HalfThenDie(open(path, "wb")) as f:
            f.write(checkpoint(2))
    print("the kill never came")
""")


def _save_and_die(tmp_path: Path, how: str, step: str) -> Path:
    """Run the saver to its death; returns the checkpoint path it left."""
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    path = tmp_path / "last.ckpt"
    child = subprocess.run([sys.executable, str(script), str(path), how, step],
                           capture_output=True, text=True, cwd=REPO, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr[-2000:]
    return path


@pytest.mark.parametrize(("step", "survivor", "unfinished"), [
    ("mid-write", 1, True), ("before-rename", 1, True), ("after-rename", 2, False),
])
def test_sigkill_at_any_step_of_a_save_leaves_a_complete_checkpoint(
    tmp_path: Path, step: str, survivor: int, unfinished: bool,
) -> None:
    path = _save_and_die(tmp_path, "atomic", step)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["step"] == survivor  # the old checkpoint whole until the rename, the new one after
    assert torch.equal(checkpoint["weights"], torch.full((1_000_000,), float(survivor)))
    assert bool(remove_unfinished(tmp_path)) == unfinished  # what training start-up clears away
    assert not list(tmp_path.glob(f"*{TEMPORARY_SUFFIX}"))


def test_the_same_kill_breaks_a_plain_torch_save(tmp_path: Path) -> None:
    """The fault is real: writing over the file in place, a kill halfway leaves neither checkpoint."""
    path = _save_and_die(tmp_path, "plain", "mid-write")
    with pytest.raises(RuntimeError, match="failed finding central directory"):  # half a zip archive
        torch.load(path, weights_only=True)


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
