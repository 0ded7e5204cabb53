"""A run's workspace: the pipeline's directory copied once, shared by every container.

The copy is what steps write to (bind-mounted read-write at ``/workspace``), so the
source tree is never modified. The store (when it lies inside the source tree) is left
out, as are sockets, fifos and devices. Artifacts are copied out of it afterwards.

Steps write the workspace, so it is untrusted when read back, and a parallel step may
change it while artifacts are copied out: they are matched and read through directory
fds (:mod:`.treeglob`), every component opened with ``O_NOFOLLOW``, and written the
same way into the artifacts directory. Symbolic links are copied as links, never
followed; regular files, directories and links are copied (owner: dockyard; mode
without setuid, setgid and sticky bits; mtime kept), nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from dockyard.ci.treeglob import (
    CHANGED,
    DIR_FLAGS,
    MAX_DEPTH,
    Match,
    TreeError,
    matches,
    no_check,
)

MOUNT_POINT = "/workspace"
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO must not block
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 8 << 20  # bytes copied between two checks


def create_workspace(source: Path, target: Path, exclude: Iterable[Path] = ()) -> None:
    """Copy the tree ``source`` to ``target`` (new), without the trees ``exclude``."""
    skipped = {os.path.realpath(p) for p in exclude}

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set()
        for name in names:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                if os.path.realpath(path) in skipped:
                    ignored.add(name)
            elif not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                ignored.add(name)
        return ignored

    shutil.copytree(source, target, symlinks=True, ignore=ignore)


def collect_artifacts(
    workspace: Path,
    patterns: Iterable[str],
    target: Path,
    *,
    check: Callable[[], None] = no_check,
) -> tuple[list[str], list[str]]:
    """Copy what ``patterns`` match in ``workspace`` into ``target``.

    ``patterns`` as in :mod:`.treeglob`. Relative paths are kept; a matched directory is copied
    whole.

    Return the copied paths, and a problem message for each entry that was not
    copied (not a file, directory or link; changed while it was copied). ``check``
    is called for every entry and every few MiB copied; it stops the collection by
    raising, and a file being copied then is removed, not left half copied.
    """
    copied: list[str] = []
    done: set[str] = set()  # paths copied so far: what is below them is copied too
    target.mkdir(parents=True, exist_ok=True)
    root = os.open(workspace, DIR_FLAGS)
    try:
        out = os.open(target, DIR_FLAGS)
        try:
            copier = _Copier(out, check)
            for pattern in patterns:
                try:
                    for match in matches(root, pattern, enter_matches=False, check=check):
                        if not _inside_any(match.path, done) and copier.copy(match):
                            done.add(match.path)
                            copied.append(match.path)
                except TreeError as e:
                    copier.problems.append(str(e))
        finally:
            os.close(out)
    finally:
        os.close(root)
    return copied, copier.problems


def _inside_any(path: str, done: set[str]) -> bool:
    """Is ``path`` one of ``done``, or below one?"""
    if "." in done:
        return True
    while path:
        if path in done:
            return True
        path = path.rpartition("/")[0]
    return False


class _Copier:
    """Copies entries from directory fds into the tree of the directory fd ``out``;
    what it could not copy goes to :attr:`problems`."""

    def __init__(self, out: int, check: Callable[[], None]):
        self.out = out
        self.check = check
        self.problems: list[str] = []

    def copy(self, match: Match) -> bool:
        """Copy a match to its path under the target; False if it was not copied."""
        parent = match.path.rpartition("/")[0]
        try:
            dst_dir = self._target_dir(parent)
        except OSError as e:
            self.problems.append(f"{match.path}: not saved: {parent}: {e.strerror}")
            return False
        try:
            return self._entry(match.dir_fd, match.name, dst_dir, match.path)
        finally:
            os.close(dst_dir)

    def _target_dir(self, path: str) -> int:
        """An fd of the target directory ``path``, created as needed, never reached
        through a symlink (the artifacts hold the workspace's links)."""
        fd = os.dup(self.out)
        try:
            for part in filter(None, path.split("/")):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _entry(self, src_dir: int, name: str, dst_dir: int, path: str) -> bool:
        """Copy ``name`` of ``src_dir`` into ``dst_dir``; ``path`` is where it is."""
        self.check()
        dst_name = path.rpartition("/")[2]
        try:
            st = os.lstat(name, dir_fd=src_dir)
            if stat.S_ISDIR(st.st_mode) and path.count("/") >= MAX_DEPTH:
                self.problems.append(f"{path}: not saved: deeper than {MAX_DEPTH} directories")
                return False
            if stat.S_ISDIR(st.st_mode):
                self._directory(src_dir, name, dst_dir, dst_name, path)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(name, dir_fd=src_dir), dst_name, dir_fd=dst_dir)
            elif stat.S_ISREG(st.st_mode):
                self._file(src_dir, name, dst_dir, dst_name)
            else:
                self.problems.append(f"{path}: not saved: not a file, directory or symlink")
                return False
        except FileExistsError:
            pass  # copied before, by an earlier pattern
        except OSError as e:
            if e.errno not in (*CHANGED, errno.EINVAL):  # EINVAL: readlink of a non-link
                raise
            self.problems.append(f"{path}: not saved: it changed while it was copied")
            return False
        return True

    def _directory(self, src_dir: int, name: str, dst_dir: int, dst_name: str, path: str) -> None:
        src = os.open(name, DIR_FLAGS, dir_fd=src_dir)
        try:
            with contextlib.suppress(FileExistsError):  # merged with what is there
                os.mkdir(dst_name, 0o700, dir_fd=dst_dir)
            dst = os.open(dst_name, DIR_FLAGS, dir_fd=dst_dir)
            try:
                for child in sorted(os.listdir(src)):
                    self._entry(src, child, dst, f"{path}/{child}" if path != "." else child)
                st = os.fstat(src)
                os.fchmod(dst, stat.S_IMODE(st.st_mode) & 0o777 | 0o700)
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def _file(self, src_dir: int, name: str, dst_dir: int, dst_name: str) -> None:
        src = os.open(name, _READ, dir_fd=src_dir)
        try:
            st = os.fstat(src)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.ENOENT, "changed")  # swapped for a FIFO or device
            dst = os.open(dst_name, _NEW_FILE, 0o600, dir_fd=dst_dir)
            try:
                self._data(src, dst, st.st_size)
                os.fchmod(dst, stat.S_IMODE(st.st_mode) & 0o777)
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            except BaseException:
                os.unlink(dst_name, dir_fd=dst_dir)
                raise
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def _data(self, src: int, dst: int, size: int) -> None:
        """Copy the first ``size`` bytes: the size when opened, so that a file a
        step keeps writing is not followed forever."""
        sent = 0
        while sent < size:
            self.check()
            n = os.sendfile(dst, src, None, min(_CHUNK, size - sent))
            if not n:
                break  # truncated meanwhile
            sent += n
