"""Paths inside a container's rootfs, resolved as the container would resolve them.

An image controls its rootfs: its ``/etc/passwd`` may be a symlink to ``/etc/shadow``,
meaning the host's if followed naively. Everything here resolves inside the rootfs:
``openat2(RESOLVE_IN_ROOT)`` makes the kernel treat the rootfs as ``/`` for every
symlink on the way, and lookups that must see symlinks themselves walk one component
at a time through such fds.

Mount stubs: runc creates a mount's destination in the rootfs when it is missing
(``/etc/hosts`` in an image without one, a bind mount's target), and in an overlay
those files and directories land in the upper dir, so in the next layer. A
:class:`MountStubs` notes beforehand which paths runc will create, and removes them
afterwards if they are still empty, as BuildKit does.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from dockyard.errors import ContainerError
from dockyard.runtime import syscalls

_RESOLVE = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS
_BENEATH = syscalls.RESOLVE_BENEATH | syscalls.RESOLVE_NO_MAGICLINKS
_DIR = os.O_PATH | os.O_DIRECTORY
_PATH = os.O_PATH | os.O_CLOEXEC
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV)
_MAX_SYMLINKS = 40
_MAX_READ = 16 << 20
_OPENAT2_TRIES = 8  # then the walk, which no rename can spoil
_NOT_FOLLOWED = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class NotRegularFile(OSError):
    """What :func:`open_regular` found is not a regular file."""

    def __init__(self) -> None:
        super().__init__(errno.EINVAL, "not a regular file")


def open_in_root(root_fd: int, path: str, flags: int, *, beneath: bool = False) -> int:
    """An fd of ``path`` inside the directory ``root_fd``, symlinks resolved inside it.

    With ``beneath``, a symlink or ``..`` leading out of the directory is refused
    (``EXDEV``) instead of stopping at it. ``openat2`` refuses a lookup through ``..``
    with ``EAGAIN`` when a rename anywhere on the machine raced it; after a few such
    tries the path is resolved by :func:`open_by_walking`, so that a busy renamer can
    neither make a file look missing nor starve the lookup.
    """
    resolve = _BENEATH if beneath else _RESOLVE
    relative = path.lstrip("/") or "."
    for _ in range(_OPENAT2_TRIES):
        try:
            return syscalls.openat2(root_fd, relative, flags, resolve)
        except BlockingIOError:
            continue
    return open_by_walking(root_fd, relative, flags, beneath=beneath)


def open_by_walking(root_fd: int, path: str, flags: int, *, beneath: bool = False) -> int:
    """What :func:`open_in_root` opens, resolved one component at a time in userspace.

    Each component is opened ``O_PATH | O_NOFOLLOW`` from the fd of the one before; a
    symlink's target is read from the symlink's own fd and resolved the same way (from
    the root if absolute); ``..`` goes back to the previous fd of the walk, never to
    the kernel's parent, and stays at the root there. So, as with ``openat2``, nothing
    outside ``root_fd`` is reached, and renames elsewhere cannot make it fail. The
    file found is opened with ``flags`` through its ``O_PATH`` fd (``/proc/self/fd``),
    so nothing swapped in after the check is opened. ``O_CREAT`` is not supported.
    """
    if flags & os.O_CREAT:
        raise ValueError("open_by_walking cannot create files")
    dirs = [os.open(".", _DIR | os.O_CLOEXEC, dir_fd=root_fd)]
    todo = path.split("/")[::-1]
    links = 0
    try:
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(dirs) > 1:
                    os.close(dirs.pop())
                elif beneath:
                    raise OSError(errno.EXDEV, "leads out of its root", path)
                continue
            fd = os.open(part, _NOT_FOLLOWED, dir_fd=dirs[-1])
            mode = os.fstat(fd).st_mode
            last = all(rest in ("", ".") for rest in todo)
            if stat.S_ISLNK(mode) and not (last and not todo and flags & os.O_NOFOLLOW):
                try:
                    target = os.readlink("", dir_fd=fd)
                finally:
                    os.close(fd)
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symlinks", path)
                if target.startswith("/"):
                    if beneath:
                        raise OSError(errno.EXDEV, "leads out of its root", path)
                    while len(dirs) > 1:
                        os.close(dirs.pop())
                todo.extend(target.split("/")[::-1])
                continue
            if not last:
                if not stat.S_ISDIR(mode):
                    os.close(fd)
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
                dirs.append(fd)
                continue
            return _reopen(fd, mode, flags | (os.O_DIRECTORY if todo else 0))
        return _reopen(os.dup(dirs[-1]), stat.S_IFDIR, flags)
    finally:
        for fd in dirs:
            os.close(fd)


def _reopen(path_fd: int, mode: int, flags: int) -> int:
    """The file the ``O_PATH`` fd ``path_fd`` holds (of type ``mode``) opened with ``flags``,
    with ``open(2)``'s errors for its type; ``path_fd`` is handed over or closed."""
    error = 0
    if flags & os.O_DIRECTORY and not stat.S_ISDIR(mode):
        error = errno.ENOTDIR
    elif stat.S_ISLNK(mode) and not flags & os.O_PATH:
        error = errno.ELOOP
    if error:
        os.close(path_fd)
        raise OSError(error, os.strerror(error))
    if flags & os.O_PATH:
        return path_fd
    try:
        return os.open(f"/proc/self/fd/{path_fd}", (flags & ~os.O_NOFOLLOW) | os.O_CLOEXEC)
    finally:
        os.close(path_fd)


def open_regular(root_fd: int, path: str, *, beneath: bool = False) -> int:
    """A blocking, close-on-exec fd to read the regular file ``path`` under ``root_fd``.

    Resolved as :func:`open_in_root` does. :class:`NotRegularFile` for anything else, OSError as
    ``openat2`` gives it (``EAGAIN`` if the tree kept changing).

    The path is looked up as an ``O_PATH`` fd and checked before anything is opened
    for reading (:func:`regular`): a FIFO or a device node that a hostile step made is
    never opened, since opening a device acts (a watchdog arms, a tape rewinds)."""
    return regular(open_in_root(root_fd, path, _PATH, beneath=beneath))


def regular(path_fd: int) -> int:
    """A blocking, close-on-exec fd to read the regular file the ``O_PATH`` fd ``path_fd`` holds.

    Anything but a regular file raises :class:`NotRegularFile`; ``path_fd`` is closed.

    The file is reopened through ``/proc/self/fd``, which opens the inode the fd holds
    (no path is looked up again), so nothing can be swapped in between."""
    try:
        if not stat.S_ISREG(os.fstat(path_fd).st_mode):
            raise NotRegularFile()
        return os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(path_fd)


def read_regular(root_fd: int, path: str, limit: int = _MAX_READ) -> bytes | None:
    """The content of the regular file ``path`` under ``root_fd`` (resolved inside it).

    None if there is none (a directory, a device, a symlink leading nowhere). OSError if it cannot
    be read, ``EFBIG`` if it is larger than ``limit`` bytes."""
    try:
        fd = open_regular(root_fd, path)
    except NotRegularFile:
        return None
    except OSError as e:
        if e.errno in _MISSING:
            return None
        raise
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes")
    return data


def lstat_in_root(root_fd: int, path: str) -> os.stat_result | None:
    """``path``'s own metadata inside ``root_fd``; None if it does not exist.

    Its parents are resolved inside, its last component not followed."""
    parent, _, name = path.rpartition("/")
    try:
        fd = open_in_root(root_fd, parent, _DIR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.lstat(name, dir_fd=fd) if name else os.fstat(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_file(rootfs: str | os.PathLike[str], path: str, limit: int = _MAX_READ) -> bytes | None:
    """The content of the regular file ``path`` in ``rootfs``, or None if there is none."""
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return read_regular(root_fd, path, limit)
    except OSError as e:
        raise ContainerError(f"cannot read {path} in {rootfs}: {e.strerror}") from None
    finally:
        os.close(root_fd)


def resolve(root_fd: int, path: str) -> tuple[str, list[str]]:
    """Split ``path`` into the real path of its longest existing part and the missing rest.

    The real path is relative to the root, symlinks resolved inside it, ``""`` for the root; the
    rest is the missing components after it -- what runc's securejoin would create."""
    todo = path.split("/")[::-1]
    real: list[str] = []
    missing: list[str] = []
    links = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if missing:
                missing.pop()
            elif real:
                real.pop()
            continue
        if missing:
            missing.append(part)
            continue
        dir_fd = open_in_root(root_fd, "/".join(real), _DIR)
        try:
            try:
                mode = os.lstat(part, dir_fd=dir_fd).st_mode
            except FileNotFoundError:
                missing.append(part)
                continue
            if stat.S_ISLNK(mode):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise ContainerError(f"{path}: too many levels of symlinks in the rootfs")
                target = os.readlink(part, dir_fd=dir_fd)
                if target.startswith("/"):
                    real.clear()
                todo.extend(target.split("/")[::-1])
                continue
        finally:
            os.close(dir_fd)
        real.append(part)
    return "/".join(real), missing


@dataclass
class MountStubs:
    """The mount points runc is about to create in a rootfs, to remove after the run.

    ``paths`` are real paths relative to the rootfs, parents before children; each
    existing directory they were created in (an *anchor*) gets its times back.
    """

    rootfs: str
    paths: list[str] = field(default_factory=list)
    anchors: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> atime, mtime ns

    @classmethod
    def find(cls, rootfs: str | os.PathLike[str], destinations: Iterable[str]) -> MountStubs:
        """Note which of ``destinations`` (and their parents) are missing in ``rootfs``."""
        stubs = cls(os.fspath(rootfs))
        root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for destination in destinations:
                try:
                    real, missing = resolve(root_fd, destination)
                except OSError:
                    continue  # runc will fail on it and say why
                if not missing:
                    continue
                if real not in stubs.anchors:
                    st = _stat_in_root(root_fd, real)
                    if st is None:
                        continue
                    stubs.anchors[real] = (st.st_atime_ns, st.st_mtime_ns)
                for depth in range(1, len(missing) + 1):
                    path = "/".join(filter(None, (real, *missing[:depth])))
                    if path not in stubs.paths:
                        stubs.paths.append(path)
        finally:
            os.close(root_fd)
        return stubs

    def remove(self) -> None:
        """Remove the stubs that are still empty (deepest first), restore anchor times.

        The container has exited, but it may have replaced stubs or their parents with
        symlinks: every lookup stays inside the rootfs, and only empty files and empty
        directories are removed.
        """
        if not self.paths:
            return
        root_fd = os.open(self.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for path in reversed(self.paths):
                parent, _, name = path.rpartition("/")
                _remove_if_empty(root_fd, parent, name)
            for anchor, (atime, mtime) in self.anchors.items():
                try:
                    fd = open_in_root(root_fd, anchor, _DIR)
                except OSError:
                    continue
                try:
                    os.utime(f"/proc/self/fd/{fd}", ns=(atime, mtime))
                finally:
                    os.close(fd)
        finally:
            os.close(root_fd)


def _stat_in_root(root_fd: int, path: str) -> os.stat_result | None:
    try:
        fd = open_in_root(root_fd, path, _DIR)
    except OSError:
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _remove_if_empty(root_fd: int, parent: str, name: str) -> None:
    try:
        dir_fd = open_in_root(root_fd, parent, _DIR)
    except OSError:
        return
    try:
        st = os.lstat(name, dir_fd=dir_fd)
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(name, dir_fd=dir_fd)
        elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass  # gone, or not empty: the container put something there, so it stays
    finally:
        os.close(dir_fd)
