"""Inter-process locks on a lock file (``flock``), for read-modify-write of shared files.

Each acquisition opens its own file description, so the lock also excludes other threads
of the same process. The lock file is never deleted (deleting it would let two processes
lock two different inodes). A directory can be the lock itself (``directory=True``):
nothing is created, so a written OCI layout holds no lock file.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from dockyard.errors import StoreError


class FileLock:
    """An exclusive or shared ``flock`` on ``path``; use as a context manager."""

    def __init__(self, path: Path, *, shared: bool = False, directory: bool = False):
        self.path = path
        self.shared = shared
        self._flags = (
            os.O_RDONLY | os.O_DIRECTORY if directory else os.O_RDWR | os.O_CREAT
        ) | os.O_CLOEXEC
        self._fd: int | None = None

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock, waiting for it unless ``blocking`` is False; True if taken."""
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held")
        try:
            fd = os.open(self.path, self._flags, 0o644)
        except OSError as e:
            raise StoreError(f"cannot open lock file {self.path}: {e.strerror}") from None
        flags = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | (
            0 if blocking else fcntl.LOCK_NB
        )
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Release the lock (closing the descriptor drops it); a no-op if not held."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
