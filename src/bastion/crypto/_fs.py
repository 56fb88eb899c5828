"""Small file-system helpers shared by the key ring and the vault: private modes, atomic writes, locks.

Everything secret-bearing is written 0600 inside 0700 directories, through a temporary file that is
fsynced before it is renamed into place, and the directory is fsynced after, so a crash leaves either
the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = ".tmp-"
FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make sure the leaf is 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if (path.stat().st_mode & 0o777) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(directory: Path) -> Path:
    """A fresh, unguessable temporary name in ``directory`` (same file system as the target)."""
    return directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"


def open_private(path: Path, *, exclusive: bool = True) -> int:
    """Open ``path`` for writing with mode 0600 whatever the umask; ``exclusive`` refuses to clobber."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    flags |= os.O_EXCL if exclusive else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_temp(directory: Path, data: bytes) -> Path:
    """Write ``data`` to a new fsynced 0600 temporary file in ``directory`` and return its path."""
    path = temp_path(directory)
    fd = open_private(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    tmp = write_temp(path.parent, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def publish_new(tmp: Path, path: Path) -> None:
    """Move the finished ``tmp`` to ``path`` atomically, failing with FileExistsError if it exists."""
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(lock_file: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``lock_file``: shared for writers, exclusive for rotation.

    The kernel drops the lock when the process dies, so a killed rotation never wedges the vault.
    """
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
