"""Directories a build reads, held open by an fd so that no path under them can leave them.

A build context (and the directory of its Dockerfile) belongs to whoever wrote it, and
in a pipeline a parallel step can swap any of its directories for a symlink to a host
directory at any moment. So the builder never opens a context path by name: the
directory is opened once, and every file under it is opened from that fd with
``openat2(RESOLVE_IN_ROOT)``, symlinks resolved as if the directory were ``/`` (see
:mod:`dockyard.runtime.inroot`). Swapping the directory itself afterwards changes
nothing: the fd still names the directory that was opened.
"""

from __future__ import annotations

import os
from pathlib import Path

from dockyard.builder.frontend.records import Record, record
from dockyard.errors import BuildError
from dockyard.runtime import inroot

_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC

MAX_READ = 16 << 20
"""The most :meth:`ConfinedDir.read_file` reads (a Dockerfile, an ignore file)."""


class ConfinedDir:
    """A directory held by an ``O_PATH`` fd; paths under it resolve inside it.

    ``path`` is where it was when it was opened, for messages and keys only: it is
    never opened again. Close it (or use it as a context manager) when done.
    """

    def __init__(self, fd: int, path: Path):
        self.fd = fd
        self.path = path

    @classmethod
    def open(cls, path: Path, what: str = "build context") -> ConfinedDir:
        """Open the directory ``path``, a path the caller trusts.

        The operator's, or a directory dockyard made. BuildError naming it as ``what`` if it is not
        a directory."""
        try:
            fd = os.open(path, _PATH_DIR)
        except OSError as e:
            raise BuildError(f"{what} {path} is not a directory: {e.strerror}") from None
        return cls(fd, Path(os.readlink(f"/proc/self/fd/{fd}")))

    def subdir(self, relative: str) -> ConfinedDir:
        """The directory ``relative`` under this one, held open on its own.

        Symlinks are resolved inside this one; BuildError if there is none."""
        try:
            fd = inroot.open_in_root(self.fd, relative, _PATH_DIR)
        except OSError as e:
            raise BuildError(f"cannot open {relative} in {self.path}: {e.strerror}") from None
        return ConfinedDir(fd, self.path / os.path.normpath("/" + relative).lstrip("/"))

    def open_fd(self, relative: str, flags: int) -> int:
        """An fd of ``relative`` opened with ``flags`` (OSError as ``openat2`` gives it)."""
        return inroot.open_in_root(self.fd, relative, flags)

    def lstat(self, relative: str) -> os.stat_result | None:
        """``relative``'s own metadata, None if it does not exist.

        Its last component is not followed."""
        return inroot.lstat_in_root(self.fd, relative)

    def read_file(self, relative: str, limit: int = MAX_READ) -> bytes | None:
        """The content of the regular file ``relative``; None if there is none.

        A directory, a device or a symlink leading nowhere inside count as none. BuildError if it is
        larger than ``limit`` or cannot be read."""
        try:
            return inroot.read_regular(self.fd, relative, limit)
        except OSError as e:
            raise BuildError(f"cannot read {relative}: {e.strerror}") from None

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> ConfinedDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # one forgotten: its fd does not outlive it
        self.close()


@record
class ConfinedFile(Record):
    """The file ``name`` (a relative path) inside the directory ``dir``."""

    dir: ConfinedDir
    name: str

    @property
    def path(self) -> Path:
        """Where it is, for messages and keys."""
        return self.dir.path / self.name

    def sibling(self, name: str) -> ConfinedFile:
        """The file ``name`` in the same directory as this one."""
        return ConfinedFile(self.dir, os.path.join(os.path.dirname(self.name), name))

    def read(self, limit: int = MAX_READ) -> bytes | None:
        """Its content, None if there is no regular file (see :meth:`ConfinedDir.read_file`)."""
        return self.dir.read_file(self.name, limit)
