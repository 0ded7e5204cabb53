"""Holds: names a live process keeps from a prune.

Such as the snapshots a build or a running container uses.

A hold is a file in a holds directory, listing one name a line and locked (``flock``,
exclusively) by its owner for as long as the hold lives. The kernel drops the lock
when the owner exits, however it exits, so :func:`held_names` tells a live hold from a
killed process's (its lock can be taken: the file is deleted) without pids or clocks.

Protocol: names are added under the store's lease (:meth:`.Store.lease`) and holds are
read under its GC lock (:meth:`.Store.gc_lock`), so a prune either sees a name or runs
entirely before it was added.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path

from dockyard.errors import StoreError


class Hold:
    """One process's hold on names in ``directory``.

    Created on the first :meth:`add`, released by :meth:`release` or when the object is garbage
    collected. Thread-safe."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._names: set[str] = set()
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._closer: weakref.finalize | None = None

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._names

    def add(self, names: Iterable[str]) -> None:
        """Hold ``names`` too. Call it under the store's lease (see the module doc)."""
        with self._lock:
            new = [name for name in dict.fromkeys(names) if name not in self._names]
            if not new:
                return
            fd = self._open()
            data = "".join(f"{name}\n" for name in new).encode()
            try:
                os.write(fd, data)
            except OSError as e:
                raise StoreError(f"cannot write hold file in {self.directory}: {e}") from None
            self._names.update(new)

    def release(self) -> None:
        """Let a prune take what this hold kept; idempotent."""
        with self._lock:
            if self._closer is not None:
                self._closer()
            self._fd = None
            self._names.clear()

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{os.getpid()}-{os.urandom(6).hex()}"
            path = self.directory / name
            # Locked under a hidden name, then renamed: a reader never meets it unlocked
            # (it would take the file for a dead process's and delete it).
            hidden = self.directory / f".{name}"
            fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(hidden, path)
        except OSError as e:
            raise StoreError(f"cannot create a hold file in {self.directory}: {e}") from None
        self._fd = fd
        self._closer = weakref.finalize(self, _close, fd, path, os.getpid())
        return fd


def _close(fd: int, path: Path, owner: int) -> None:
    if os.getpid() != owner:
        return  # a forked child exiting: the hold is its parent's
    path.unlink(missing_ok=True)  # before the lock goes: no prune sees it dead
    os.close(fd)


def held_names(directory: Path) -> set[str]:
    """Every name a live hold in ``directory`` keeps; the files of dead holds are deleted.

    Call it under the store's GC lock (see the module doc)."""
    names: set[str] = set()
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return names
    for entry in entries:
        if entry.name.startswith("."):
            continue  # being made (see Hold._open)
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # released meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # its owner lives: what it holds stays
                names.update(_read_all(fd).decode(errors="replace").split())
            else:
                Path(entry.path).unlink(missing_ok=True)  # its owner is gone
        finally:
            os.close(fd)
    return names


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)
