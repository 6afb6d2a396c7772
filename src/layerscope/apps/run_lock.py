"""One run per run folder: a lock held for the life of a run, released by the system when its process ends.

A requeued job started while the old one still runs, or the same command typed twice, would
otherwise train twice side by side into the same checkpoints and event files. The lock is an
advisory file lock (``flock`` through ``filelock``) on ``<run folder>/.run.lock``: the kernel drops it
with the process that held it, so a run killed by SIGKILL or by its scheduler never leaves a lock
behind that blocks its resume. Beside it ``.run.owner`` says who holds it (process, host, since when),
so the second start can name it.

The CLI takes the lock in a Hydra callback (``on_run_start``), before Hydra writes anything into the
folder (its ``.hydra`` record and ``train.log``): a refused start touches nothing. Sweep jobs take it
when each job starts. The other processes of a DDP run (Lightning starts ranks 1.. by running the
command again; SLURM and torchrun start every rank) share the lock of the process that holds it:
they are told apart by the rank variables their launcher sets, and take none.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from layerscope.apps.cli import fail
from layerscope.errors import UserError
from layerscope.files import RUN_LOCK, RUN_OWNER, write_atomically

# Set by Lightning's launcher for ranks 1.., by torchrun and by SLURM for every rank; 0 or unset in
# the process that starts a run.
RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID")


def started_as_another_rank() -> bool:
    """Whether this process is a DDP rank other than the one that started the run."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) != 0:
            return True
    return False


def _holder(folder: Path) -> str:
    try:
        return (folder / RUN_OWNER).read_text().strip() or "another process"
    except OSError:
        return "another process"


class RunFolderLock:
    """The lock on one run folder, taken by :meth:`acquire` (or refused in one line) and let go by
    :meth:`release`; a process other than the run's first rank takes nothing. Keep the object for as
    long as the lock should hold: ``filelock`` lets go when its lock object is collected."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock: FileLock | None = None

    def acquire(self) -> None:
        if started_as_another_rank() or self._lock is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.folder / RUN_LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise UserError(
                f"{self.folder} is in use by {_holder(self.folder)}: a run is training there. Wait for it "
                "to end (then resume=auto continues it), or give this run a folder of its own "
                "(hydra.run.dir=...)"
            ) from None
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        write_atomically(self.folder / RUN_OWNER,
                         f"process {os.getpid()} on {socket.gethostname()}, since {since}\n".encode())
        self._lock = lock

    def release(self) -> None:
        if self._lock is None:
            return
        (self.folder / RUN_OWNER).unlink(missing_ok=True)
        self._lock.release()
        self._lock = None


@contextmanager
def run_folder_locked(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s run lock for the duration (a one-line UserError if another run holds it)."""
    lock = RunFolderLock(folder)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


class LockRunFolder(Callback):
    """Hydra callback: the run folder (or each sweep job's folder) locked for the life of its run."""

    def __init__(self) -> None:
        self._locks: list[RunFolderLock] = []

    def _take(self, folder: str) -> None:
        lock = RunFolderLock(Path(folder))
        try:
            lock.acquire()
        except UserError as err:  # Hydra would print a traceback for it: said here, in one line
            fail(str(err))
        self._locks.append(lock)

    def _let_go(self) -> None:
        while self._locks:
            self._locks.pop().release()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._take(str(config.hydra.run.dir))  # resolved once: Hydra runs the job in the same folder

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._let_go()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self._locks:  # a sweep job (a single run holds its lock already)
            self._take(str(config.hydra.runtime.output_dir))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            self._let_go()
