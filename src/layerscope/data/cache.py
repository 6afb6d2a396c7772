"""Data caches the project renders itself: verified before every use, rendered again when damaged.

Beside each cache file ``name`` lies ``name.sha256``, one line holding the file's size in bytes and
its SHA-256. A cache is used only when both match; a cache cut short, overwritten, or left without
its checksum (one made before checksums, or a write killed between the two files) is rendered
again, which costs seconds, instead of failing deep inside ``torch.load``. Rendering takes the
folder's lock, so two processes that find a cache missing or damaged at once render it once: the
second waits, then finds the first one's cache verified. Only caches the project names and renders
pass through here; data the user placed (an IDX or CIFAR file) is never rewritten.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from layerscope.files import one_at_a_time, write_atomically

CHECKSUM_SUFFIX = ".sha256"  # the sidecar's suffix: "<size> <sha256>\n"
log = logging.getLogger(__name__)
T = TypeVar("T")


def checksum_path(path: Path) -> Path:
    """Where the size and checksum of cache ``path`` are written."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def fingerprint(data: bytes) -> str:
    """The sidecar's line for ``data``: its size and SHA-256."""
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"


def read_verified(path: Path) -> tuple[bytes | None, str]:
    """The bytes of cache ``path`` if its size and checksum match, else None and the reason why."""
    if not path.exists():
        return None, "missing"
    try:
        expected = checksum_path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None, f"{path} has no checksum beside it (made by an older layerscope or cut off mid-write)"
    try:
        data = path.read_bytes()
    except OSError as err:
        return None, f"{path} could not be read ({err.strerror})"
    if fingerprint(data) != expected:
        return None, f"{path} does not match its checksum (damaged or cut short)"
    return data, "verified"


def write_verified(path: Path, data: bytes) -> None:
    """Write cache ``path`` and then its checksum, each atomically.

    Killed in between, the cache is left without a matching checksum and is rendered again.
    """
    checksum_path(path).unlink(missing_ok=True)
    write_atomically(path, data)
    write_atomically(checksum_path(path), fingerprint(data).encode())


def cached(
    path: Path, render: Callable[[], T], encode: Callable[[T], bytes], decode: Callable[[bytes], T | None],
) -> T:
    """The object cached at ``path``, rendered (and cached) when missing, damaged or undecodable.

    ``decode`` returns None for bytes that verify yet do not hold what the caller expects (a cache
    written by a bug), which is treated like damage.
    """
    with one_at_a_time(path.parent, path.name):  # DDP ranks and sweep jobs: one renders, the others wait
        data, why = read_verified(path)
        if data is not None:
            value = decode(data)
            if value is not None:
                return value
            why = f"{path} does not hold what it should"
        if why != "missing":
            log.warning("%s: rendering it again", why)
        log.info("rendering %s", path)
        value = render()
        write_verified(path, encode(value))
        return value
