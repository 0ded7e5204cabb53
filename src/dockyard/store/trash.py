"""Deleting directory trees so that a crash half-way leaves obvious garbage.

A tree is first renamed to a hidden ``.trash-`` name beside it (:func:`move_to_trash`)
and only then deleted (:func:`remove_tree`): a process killed while deleting leaves a
``.trash-`` dir that the next prune finishes, never a half-empty dir under its real
name that looks complete. Deleting copes with directories whose mode forbids it
(overlay's work dirs hold ``d---------`` dirs) and refuses trees with a mount below.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from types import TracebackType
from typing import Any

from dockyard.errors import StoreError
from dockyard.files import atomic
from dockyard.mountinfo import mount_points_under

TRASH_PREFIX = ".trash-"


def is_trash(name: str) -> bool:
    """True for the names :func:`move_to_trash` gives."""
    return name.startswith(TRASH_PREFIX)


def move_to_trash(path: Path) -> Path | None:
    """Rename ``path`` to a fresh ``.trash-`` name in its directory, durably.

    Return the new path, or None if ``path`` does not exist."""
    target = path.with_name(f"{TRASH_PREFIX}{path.name.lstrip('.')[:24]}-{os.urandom(6).hex()}")
    try:
        path.rename(target)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StoreError(f"cannot move {path} to the trash: {e.strerror}") from None
    atomic.fsync_dir(path.parent)
    return target


def remove_tree(path: Path) -> int:
    """Delete the tree ``path`` (missing is fine); return the bytes its files took.

    Raise :class:`StoreError` before deleting anything if something is mounted below
    ``path``, and as soon as an entry cannot be deleted even after giving its directory
    owner permissions (a tree owned by someone else).
    """
    if mounted := mount_points_under(path):
        raise StoreError(f"not deleting {path}: {mounted[0]} is a mount point")
    size = measure(path)
    shutil.rmtree(path, onerror=_RetryWithPermissions())
    return size


def measure(path: Path) -> int:
    """The apparent size of the files under ``path`` that deleting it frees.

    Each inode once, and only if all its links are under ``path`` (snapshots share inodes)."""
    return tree_stats(path)[0]


def tree_stats(path: Path) -> tuple[int, float]:
    """:func:`measure`'s size, and the newest mtime in the tree (``path``'s included).

    That mtime is when it was last written, which ``dockyard df`` and ``prune --until`` take as its
    last use (reading a tree moves atimes, so atimes cannot say)."""
    links: dict[int, list[int]] = {}  # inode -> [size, links left outside the tree]
    try:
        newest = path.stat().st_mtime
    except FileNotFoundError:
        return 0, 0.0
    pending = [path]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, PermissionError):
            continue  # gone meanwhile, or unreadable until deletion chmods it: not counted
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            newest = max(newest, info.st_mtime)
            if stat.S_ISDIR(info.st_mode):
                pending.append(Path(entry.path))
                continue
            counted = links.setdefault(info.st_ino, [info.st_size, info.st_nlink])
            counted[1] -= 1
    return sum(size for size, outside in links.values() if outside <= 0), newest


class _RetryWithPermissions:
    """``shutil.rmtree``'s error handler: where permissions stop it, give the owner
    full permissions on the directory in the way and try again, once per directory."""

    def __init__(self) -> None:
        self._opened: set[str] = set()

    def __call__(
        self,
        func: Any,
        path: str,
        exc_info: tuple[type[BaseException], BaseException, TracebackType],
    ) -> None:
        error = exc_info[1]
        if isinstance(error, FileNotFoundError):
            return  # deleted meanwhile (another prune finishing the same trash)
        if not isinstance(error, PermissionError):
            reason = error.strerror if isinstance(error, OSError) else str(error)
            raise StoreError(f"cannot delete {path}: {reason}") from None
        try:
            if func in (os.open, os.scandir) and path not in self._opened:
                self._opened.add(path)  # a directory we may not read: open it up, recurse
                os.chmod(path, stat.S_IRWXU)
                shutil.rmtree(path, onerror=self)
            elif func in (os.unlink, os.rmdir):  # an entry of a directory we may not write
                os.chmod(os.path.dirname(path), stat.S_IRWXU)
                func(path)
            else:
                raise error
        except OSError as e:
            raise StoreError(f"cannot delete {path}: {e.strerror}") from None
