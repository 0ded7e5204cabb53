"""Atomic file writes: a hidden temp file on the target's filesystem, fsync, ``os.replace``.

A reader sees the old file or the new one, never a half-written one, even if the writer
is killed: what a crash leaves behind is a hidden temp file, which :func:`is_temp`
recognises and :func:`remove_stale_temps` deletes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = ".tmp-"
FILE_MODE = 0o644


def is_temp(name: str) -> bool:
    """True for the names :func:`temp_file` gives (never a blob or a document name)."""
    return name.startswith(TEMP_PREFIX)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_temp(directory: Path, hint: str = "") -> tuple[BinaryIO, Path]:
    """A new hidden temp file in ``directory``, open for writing; the caller owns it."""
    import tempfile  # here: with shutil, random, bz2, lzma, ~5 ms that reading commands skip

    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{hint[:24]}-", dir=directory)
    return os.fdopen(fd, "wb"), Path(name)


@contextlib.contextmanager
def temp_file(directory: Path, hint: str = "") -> Iterator[tuple[BinaryIO, Path]]:
    """Yield an open hidden temp file in ``directory``; delete it if the block raises.

    The caller renames it into place before leaving the block (see :func:`commit`).
    """
    f, path = create_temp(directory, hint)
    try:
        with f:
            yield f, path
    except BaseException:
        path.unlink(missing_ok=True)
        raise


WRITEBACK_STEP = 8 << 20


class EarlyWriteback:
    """Ask the kernel to start writing a growing file to disk every few MiB.

    The final fsync then waits for the last few MiB only, instead of the whole blob:
    durability at a fraction of the cost (POSIX_FADV_DONTNEED starts asynchronous
    writeback of dirty pages on Linux).
    """

    def __init__(self, f: BinaryIO):
        self._f = f
        self._written = 0
        self._flushed = 0

    def wrote(self, n: int) -> None:
        self._written += n
        if self._written - self._flushed >= WRITEBACK_STEP:
            self._f.flush()
            os.posix_fadvise(
                self._f.fileno(),
                self._flushed,
                self._written - self._flushed,
                os.POSIX_FADV_DONTNEED,
            )
            self._flushed = self._written


def commit(f: BinaryIO, temp: Path, target: Path) -> None:
    """Flush and fsync ``f`` (the open temp file), then rename it onto ``target``."""
    f.flush()
    os.fchmod(f.fileno(), FILE_MODE)
    os.fsync(f.fileno())
    os.replace(temp, target)
    fsync_dir(target.parent)


def publish(f: BinaryIO, temp: Path, target: Path) -> None:
    """Rename ``f`` (the open temp file) onto ``target`` without syncing.

    Atomic for readers, not durable (the caller records that; see :mod:`.unsynced`)."""
    f.flush()
    os.fchmod(f.fileno(), FILE_MODE)
    os.replace(temp, target)


def write_bytes(target: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``target`` with ``data`` atomically; synced to disk unless not ``durable``.

    Not durable suits a document a later durable write replaces: two fsyncs saved."""
    with temp_file(target.parent, target.name) as (f, temp):
        f.write(data)
        (commit if durable else publish)(f, temp, target)


def remove_stale_temps(directory: Path, older_than: float) -> int:
    """Delete temp files in ``directory`` untouched for ``older_than`` seconds; count them.

    A live writer touches its temp file as it streams, so only abandoned ones (a killed
    process) get old; pass 0 when no writer can be running.
    """
    cutoff = time.time() - older_than
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not is_temp(entry.name):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            pass
    return removed
