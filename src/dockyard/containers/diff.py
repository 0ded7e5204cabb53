"""What a working container changed against its image, as ``docker diff`` shows it.

Per path: ``A`` added, ``C`` changed (a directory: something in it), ``D`` deleted.

Read from the upper dir alone plus lookups in the lower dirs, with overlayfs's rules:
a 0/0 character device deletes, an opaque directory hides what was below, a lower
directory merges only through directories. A directory overlayfs merely copied up (to
put runc's mount stubs in it, say: they are removed and its times restored after a run)
is no change unless its metadata differs or something in it changed, as docker's diff
has it. Everything is opened from directory fds, never following a symlink: the
container wrote the upper dir, the image the lowers.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from dockyard.layers import whiteouts

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def changes(upper: Path, lowers: Sequence[Path]) -> list[tuple[str, str]]:
    """``(kind, path)`` for every change in ``upper`` over ``lowers`` (top first), by path."""
    upper_fd = os.open(upper, _DIR_FLAGS)
    lower_fds = [os.open(lower, _DIR_FLAGS) for lower in lowers]
    try:
        return sorted(_walk(upper_fd, lower_fds, "/"), key=lambda change: change[1])
    finally:
        for fd in (upper_fd, *lower_fds):
            os.close(fd)


def unchanged(upper: Path, lowers: Sequence[Path]) -> bool:
    """Whether ``upper`` changes nothing over ``lowers``: stops at the first change."""
    upper_fd = os.open(upper, _DIR_FLAGS)
    lower_fds = [os.open(lower, _DIR_FLAGS) for lower in lowers]
    try:
        return next(_walk(upper_fd, lower_fds, "/"), None) is None
    finally:
        for fd in (upper_fd, *lower_fds):
            os.close(fd)


def _walk(upper_fd: int, lower_fds: list[int], prefix: str) -> Iterator[tuple[str, str]]:
    with os.scandir(upper_fd) as listing:
        names = sorted(entry.name for entry in listing)
    for name in names:
        path = prefix + name
        st = os.stat(name, dir_fd=upper_fd, follow_symlinks=False)
        below, below_dirs = _lookup(lower_fds, name)
        try:
            if _is_whiteout(st):
                if below is not None:
                    yield "D", path
                continue
            if not stat.S_ISDIR(st.st_mode):
                yield ("A" if below is None else "C"), path
                continue
            child = os.open(name, _DIR_FLAGS, dir_fd=upper_fd)
            try:
                if _is_opaque(child) or below is None or not stat.S_ISDIR(below.st_mode):
                    yield ("A" if below is None else "C"), path
                    hidden = _merged_names(below_dirs) if below is not None else set()
                    for gone in sorted(hidden - set(os.listdir(child))):
                        yield "D", f"{path}/{gone}"
                    yield from _walk(child, [], path + "/")
                elif not _same_dir(st, child, below, below_dirs[0]):
                    yield "C", path
                    yield from _walk(child, below_dirs, path + "/")
                else:  # copied up: a change only if something in it changed
                    inside = _walk(child, below_dirs, path + "/")
                    first = next(inside, None)
                    if first is not None:
                        yield "C", path
                        yield first
                        yield from inside
            finally:
                os.close(child)
        finally:
            for fd in below_dirs:
                os.close(fd)


def _lookup(lower_fds: list[int], name: str) -> tuple[os.stat_result | None, list[int]]:
    """What ``name`` is below (the topmost entry, None if absent or deleted), and the
    fds of the lower directories merged under it if it is a directory (caller closes)."""
    found: os.stat_result | None = None
    dirs: list[int] = []
    for fd in lower_fds:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if _is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
            if found is None and not _is_whiteout(st):
                found = st
            break
        found = found or st
        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
        dirs.append(child)
        if _is_opaque(child):
            break
    return found, dirs


def _merged_names(dir_fds: list[int]) -> set[str]:
    """The names the merged lower directories show (whiteouts applied)."""
    shown: set[str] = set()
    gone: set[str] = set()
    for fd in dir_fds:
        with os.scandir(fd) as listing:
            for entry in listing:
                if entry.name in shown or entry.name in gone:
                    continue
                if _is_whiteout(entry.stat(follow_symlinks=False)):
                    gone.add(entry.name)
                else:
                    shown.add(entry.name)
    return shown


def _same_dir(st: os.stat_result, fd: int, below: os.stat_result, below_fd: int) -> bool:
    """Whether the upper directory (``st``, ``fd``) has the metadata of the one below."""
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns) == (
        below.st_mode,
        below.st_uid,
        below.st_gid,
        below.st_mtime_ns,
    ) and _xattrs(fd) == _xattrs(below_fd)


def _xattrs(fd: int) -> dict[str, bytes]:
    """The extended attributes of ``fd`` but overlayfs's own."""
    return {
        name: os.getxattr(fd, name)
        for name in os.listxattr(fd)
        if not name.startswith(whiteouts.OVERLAY_XATTR_PREFIXES)
    }


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(fd: int) -> bool:
    for attr in whiteouts.OVERLAY_OPAQUE_XATTRS:
        try:
            if os.getxattr(fd, attr) == b"y":
                return True
        except OSError:
            pass
    return False
