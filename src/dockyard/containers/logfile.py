"""A background container's log: a file rotated at a size cap, and a reader across it.

Rotated as docker's json-file driver does with ``max-size`` and ``max-file``; the reader reads
across the rotated files.

The live file is ``container.log``; rotating renames it to ``container.log.1`` (the
older ones one number up, the oldest past ``max_files - 1`` dropped) and starts a new
one. The writer rotates holding ``container.log.lock`` exclusively, and only if it gets
the lock at once (a reader holds it shared for the few syscalls of opening its files):
the container never waits for a reader, and a file runs over the cap by what is
written meanwhile. Holding the lock, a reader sees the files in one consistent order and
finds the file after the one it was reading by its inode, however many rotations it
slept through; a file rotated away before it was read is lost, as with docker.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dockyard.files.locking import FileLock

LOG_FILE = "container.log"
LOCK_FILE = "container.log.lock"
MAX_FILES = 100
_ROTATED = re.compile(re.escape(LOG_FILE) + r"\.([1-9][0-9]{0,5})")
_WRITE_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class LogLimits:
    """The cap of a log: ``max_files`` files of at most ``max_size`` bytes each.

    The live one and ``max_files - 1`` rotated, at most :data:`MAX_FILES`."""

    max_size: int = 10 << 20
    max_files: int = 3

    def __post_init__(self) -> None:
        if self.max_size < 1 or not 1 <= self.max_files <= MAX_FILES:
            raise ValueError(f"log limits: max_size >= 1, 1 <= max_files <= {MAX_FILES}")


class LogWriter:
    """Appends to the log in ``directory``, rotating it at ``limits``; one per log."""

    def __init__(self, directory: Path, limits: LogLimits):
        self.directory = directory
        self.limits = limits
        self._dir = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for number, _ in _rotated(self._dir):  # a past run's, with a larger max-file
                if number >= limits.max_files:
                    os.unlink(f"{LOG_FILE}.{number}", dir_fd=self._dir)
            self._fd = os.open(LOG_FILE, _WRITE_FLAGS, 0o600, dir_fd=self._dir)
            self._size = os.fstat(self._fd).st_size
        except BaseException:
            os.close(self._dir)
            raise

    def write(self, data: bytes) -> None:
        """Append ``data``, rotating first whenever the live file would pass the cap."""
        view = memoryview(data)
        while view:
            room = self.limits.max_size - self._size
            if room <= 0 and self._rotate():
                room = self.limits.max_size
            part = view if room <= 0 else view[:room]
            written = os.write(self._fd, part)
            self._size += written
            view = view[written:]

    def close(self) -> None:
        """Close the live file."""
        os.close(self._fd)
        os.close(self._dir)

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rotate(self) -> bool:
        """Start a new live file; False if a reader holds the lock just now."""
        lock = FileLock(self.directory / LOCK_FILE)
        if not lock.acquire(blocking=False):
            return False
        try:
            keep = self.limits.max_files - 1
            for number, name in _rotated(self._dir):  # oldest first: none overwritten
                if number < keep:
                    os.rename(
                        name, f"{LOG_FILE}.{number + 1}",
                        src_dir_fd=self._dir, dst_dir_fd=self._dir,
                    )  # fmt: skip
                else:
                    os.unlink(name, dir_fd=self._dir)
            if keep:
                os.rename(LOG_FILE, f"{LOG_FILE}.1", src_dir_fd=self._dir, dst_dir_fd=self._dir)
            else:
                os.unlink(LOG_FILE, dir_fd=self._dir)
            fd = os.open(LOG_FILE, _WRITE_FLAGS, 0o600, dir_fd=self._dir)
        finally:
            lock.release()
        os.close(self._fd)
        self._fd, self._size = fd, 0
        return True


def append(directory: Path, limits: LogLimits, data: bytes) -> None:
    """Append ``data`` to the log in ``directory`` (a line from the supervisor)."""
    with LogWriter(directory, limits) as writer:
        writer.write(data)


class LogReader:
    """Reads the log in ``directory`` from its oldest file on, through rotations."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._dir = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._fd: int | None = None
        self._pending: list[int] = []
        try:
            self._pending = self._open_after(None)
        except BaseException:
            os.close(self._dir)
            raise

    def copy(self, out: BinaryIO) -> None:
        """Copy to ``out`` what was written since the last call, through any rotation."""
        while True:
            if self._fd is None:
                if not self._pending:
                    self._pending = self._open_after(None)
                    if not self._pending:
                        return
                self._fd = self._pending.pop(0)
            _copy(self._fd, out)
            if self._pending:
                os.close(self._fd)
                self._fd = None
                continue
            if not self._rotated():
                return
            newer = self._open_after(self._fd)
            if not newer:  # between the rename and the new file: the next call
                return
            _copy(self._fd, out)  # what was written before the rename
            os.close(self._fd)
            self._fd = None
            self._pending = newer

    def close(self) -> None:
        """Close every file still open."""
        for fd in [self._fd, *self._pending, self._dir]:
            if fd is not None:
                os.close(fd)
        self._fd, self._pending = None, []

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rotated(self) -> bool:
        """Whether the live file is no longer the one being read."""
        assert self._fd is not None
        try:
            live = os.stat(LOG_FILE, dir_fd=self._dir, follow_symlinks=False)
        except FileNotFoundError:
            return True
        return live.st_ino != os.fstat(self._fd).st_ino

    def _open_after(self, fd: int | None) -> list[int]:
        """The log's files, oldest first, opened; only those after the file of ``fd``
        if it is still one of them."""
        with FileLock(self.directory / LOCK_FILE, shared=True):
            names = [f"{LOG_FILE}.{n}" for n, _ in _rotated(self._dir)] + [LOG_FILE]
            opened: list[int] = []
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    opened.append(os.open(name, _READ_FLAGS, dir_fd=self._dir))
        if fd is not None:
            inode = os.fstat(fd).st_ino
            inodes = [os.fstat(each).st_ino for each in opened]
            if inode in inodes:
                cut = inodes.index(inode) + 1
                for each in opened[:cut]:
                    os.close(each)
                opened = opened[cut:]
        return opened


def _rotated(directory: int) -> list[tuple[int, str]]:
    """The rotated files in ``directory`` (a dir fd), oldest (highest number) first."""
    found = []
    for name in os.listdir(directory):
        if match := _ROTATED.fullmatch(name):
            found.append((int(match[1]), name))
    return sorted(found, reverse=True)


def _copy(fd: int, out: BinaryIO) -> None:
    while chunk := os.read(fd, 1 << 16):
        out.write(chunk)
    out.flush()


def follow(directory: Path, out: BinaryIO, *, until: Callable[[], bool]) -> None:
    """Copy the log in ``directory`` to ``out``, then what is written to it until it is over.

    ``until()`` says when it is over; woken by inotify, no polling."""
    from inotify_simple import INotify
    from inotify_simple import flags as events

    with INotify() as watch:  # before reading: no write between the two goes unseen
        watch.add_watch(directory, events.MODIFY | events.CREATE | events.MOVED_TO)
        with LogReader(directory) as reader:
            reader.copy(out)
            while not until():
                watch.read(timeout=1000)  # the timeout: a killed supervisor says nothing
                reader.copy(out)
            reader.copy(out)
