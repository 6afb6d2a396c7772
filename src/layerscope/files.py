"""Files that are whole or absent, and folders that one process fills at a time.

``write_atomically`` writes to a temporary name, fsyncs, then renames into place: a process
killed at any moment (SIGKILL, power loss) leaves the old file or the new one, never half of one.
Used for checkpoints, metrics.json and data caches. ``one_at_a_time`` serialises downloads.
"""

from __future__ import annotations

import errno
import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

TEMPORARY_SUFFIX = ".tmp"  # how unfinished files end; remove_unfinished() clears them
RUN_LOCK, RUN_OWNER = ".run.lock", ".run.owner"  # a run folder's lock and who holds it (apps/run_lock.py)


def write_atomically(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` atomically and durably; an OSError (full disk) leaves ``path`` as it was."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}"
    # Created like any other file (0o666 less the umask), which tempfile.mkstemp's 0o600 is not.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the new name points at it
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)  # and the rename itself survives a power loss


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` into memory. (Straight into a file, a failed write surfaces as a vague RuntimeError.)"""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EBADF):  # file systems that cannot fsync a folder
            raise
    finally:
        os.close(fd)


def remove_unfinished(folder: Path) -> list[Path]:
    """Delete the temporary files a killed write left in ``folder``; returns what it removed."""
    removed = []
    for stale in folder.glob(f".*{TEMPORARY_SUFFIX}") if folder.is_dir() else []:
        with suppress(OSError):
            stale.unlink()
            removed.append(stale)
    return removed


@contextmanager
def one_at_a_time(folder: Path, name: str) -> Iterator[None]:
    """Processes sharing ``folder`` (DDP ranks, sweep jobs) enter one by one.

    The first downloads or generates a data set; the others wait, then find it in place.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f".{name}.lock")):
        yield
