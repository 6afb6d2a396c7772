"""One run per run folder, with real processes: a second start is refused in one line and touches
nothing; the lock dies with a killed run, so resume=auto goes on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from layerscope.apps.run_lock import RunFolderLock, run_folder_locked, started_as_another_rank
from layerscope.files import RUN_LOCK
from tests.apps.test_resume import RUN
from tests.apps.test_train_cli import REPO, run_train

PAUSE = ["+callbacks.pause._target_=tests.apps.faults.PauseAtStep", "+callbacks.pause.step=5"]


def _snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``folder`` but the lock file itself: size, modification time, content."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != RUN_LOCK}


def _wait_for(path: Path, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 300
    while not path.exists():
        assert process.poll() is None, f"the first run ended early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "the first run never reached its pause"
        time.sleep(0.2)


def test_a_second_start_is_refused_in_one_line_and_a_killed_run_resumes(tmp_path: Path) -> None:
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    ready, log = tmp_path / "ready", tmp_path / "first.log"
    command = [sys.executable, str(REPO / "train.py"), f"paths.data_dir={data_dir}", *RUN,
               f"hydra.run.dir={run_dir}", *PAUSE, f"+callbacks.pause.ready={ready}"]
    with log.open("w") as output:
        first = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_for(ready, first, log)
        before = _snapshot(run_dir)
        assert "checkpoints/last.ckpt" in before  # saved at step 3, before the pause at step 5

        second = run_train(*RUN, f"hydra.run.dir={run_dir}", data_dir=data_dir)
        assert second.returncode == 2
        assert "Traceback" not in second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert f"in use by process {first.pid} on " in lines[0] and "resume=auto" in lines[0]
        assert _snapshot(run_dir) == before  # not a byte written, not a file touched
    finally:
        first.kill()  # SIGKILL: nothing of the run's own code runs after it
        first.wait()

    resumed = run_train(*RUN, f"hydra.run.dir={run_dir}", "resume=auto", data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]  # the dead run's lock went with it
    assert f"Resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in resumed.stderr + resumed.stdout
    assert not (run_dir / ".run.owner").exists()  # let go at the end of the run


def test_the_lock_is_let_go_after_a_run_and_held_during_it(tmp_path: Path) -> None:
    probe = [sys.executable, "-c",
             "import sys; from pathlib import Path; from layerscope.apps.run_lock import RunFolderLock\n"
             "try:\n    RunFolderLock(Path(sys.argv[1])).acquire()\nexcept Exception as err:\n"
             "    print(err); sys.exit(3)", str(tmp_path)]
    with run_folder_locked(tmp_path):
        held = subprocess.run(probe, capture_output=True, text=True, timeout=120)
        assert held.returncode == 3 and f"process {os.getpid()}" in held.stdout
    assert subprocess.run(probe, capture_output=True, text=True, timeout=120).returncode == 0


def test_other_ranks_of_a_run_take_no_lock(tmp_path: Path, monkeypatch) -> None:
    with run_folder_locked(tmp_path):
        for name in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"):
            monkeypatch.setenv(name, "1")
            assert started_as_another_rank()
            RunFolderLock(tmp_path).acquire()  # shares the first rank's lock: no wait, no error
            monkeypatch.setenv(name, "0")
        assert not started_as_another_rank()
