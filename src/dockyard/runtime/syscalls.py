"""Thin ``ctypes`` wrappers for the Linux system calls the runtime needs.

Python has no binding for ``mount(2)``, ``umount2(2)``, ``unshare(2)``, ``syncfs(2)``,
``renameat2(2)``, ``openat2(2)`` or the new mount API (``fsopen``/``fsconfig``/
``fsmount``/``move_mount``). Calling them directly costs microseconds where spawning
``mount(8)`` costs milliseconds, and gives us the real ``errno``. Every wrapper raises
:class:`OSError` on failure. The syscall numbers of the new calls are the same on every
architecture Linux added them to after 5.0 (the unified syscall table).
"""

from __future__ import annotations

import ctypes
import errno
import os

_libc = ctypes.CDLL(None, use_errno=True)

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000

# umount2(2) flags
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

# unshare(2) / setns(2)
CLONE_NEWNET = 0x40000000

# openat2(2) resolve flags
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_RENAME_NOREPLACE = 0x1
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_SYS_OPENAT2 = 437
_FSOPEN_CLOEXEC = 0x1
_FSCONFIG_SET_FLAG = 0
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_FSMOUNT_CLOEXEC = 0x1
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_AT_FDCWD = -100


def _check(result: int, what: str | os.PathLike[str] | None = None) -> int:
    """``result`` if the call succeeded, else raise its errno (naming ``what``)."""
    if result < 0:
        code = ctypes.get_errno()
        if what is None:
            raise OSError(code, os.strerror(code))
        raise OSError(code, os.strerror(code), os.fspath(what))
    return result


def _b(path: str | os.PathLike[str] | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def mount(
    source: str | os.PathLike[str] | None,
    target: str | os.PathLike[str],
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """``mount(2)``; ``data`` is the filesystem's option string."""
    result = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(result, target)


def umount2(target: str | os.PathLike[str], flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), target)


def unshare(flags: int) -> None:
    """``unshare(2)``: for ``CLONE_NEWNET`` this affects the calling thread only."""
    _check(_libc.unshare(ctypes.c_int(flags)))


def syncfs(path: str | os.PathLike[str]) -> None:
    """``syncfs(2)``: write out everything cached for the filesystem holding ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.syncfs(ctypes.c_int(fd)), path)
    finally:
        os.close(fd)


def rename_noreplace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> bool:
    """Rename ``source`` to ``target`` unless ``target`` exists; False if it does.

    Even an empty dir counts, which plain ``rename(2)`` would replace."""
    result = _libc.renameat2(
        ctypes.c_int(_AT_FDCWD),
        _b(source),
        ctypes.c_int(_AT_FDCWD),
        _b(target),
        ctypes.c_uint(_RENAME_NOREPLACE),
    )
    if result < 0 and ctypes.get_errno() == errno.EEXIST:
        return False
    _check(result, source)
    return True


def filesystem_type(fd: int) -> int:
    """The ``f_type`` magic number ``fstatfs(2)`` gives for the filesystem of ``fd``."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes; f_type comes first
    _check(_libc.fstatfs(ctypes.c_int(fd), buf))
    return ctypes.c_long.from_buffer(buf).value


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    """``openat2(2)`` (Linux 5.6): open ``path`` under ``dir_fd`` with ``resolve`` rules."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, resolve)
    result = _libc.syscall(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        _b(path),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    return _check(result, path)


class FsContext:
    """A filesystem context of the new mount API (Linux 5.2): configure, then mount.

    Each option is set on its own, so no option string (and none of its one-page limit)
    is involved; overlayfs accepts one ``lowerdir+`` per layer since Linux 6.8.
    """

    def __init__(self, fstype: str):
        self._fd = _check(
            _libc.syscall(ctypes.c_long(_SYS_FSOPEN), _b(fstype), ctypes.c_uint(_FSOPEN_CLOEXEC))
        )

    def set(self, key: str, value: str | None = None) -> None:
        """Set the option ``key`` to ``value``, or the flag ``key`` if ``value`` is None."""
        result = _libc.syscall(
            ctypes.c_long(_SYS_FSCONFIG),
            ctypes.c_int(self._fd),
            ctypes.c_uint(_FSCONFIG_SET_FLAG if value is None else _FSCONFIG_SET_STRING),
            _b(key),
            _b(value),
            ctypes.c_int(0),
        )
        self._raise_if(result, key if value is None else f"{key}={value}")

    def mount(self, target: str | os.PathLike[str]) -> None:
        """Create the superblock and attach it at ``target``."""
        result = _libc.syscall(
            ctypes.c_long(_SYS_FSCONFIG),
            ctypes.c_int(self._fd),
            ctypes.c_uint(_FSCONFIG_CMD_CREATE),
            None,
            None,
            ctypes.c_int(0),
        )
        self._raise_if(result, os.fspath(target))
        mount_fd = _check(
            _libc.syscall(
                ctypes.c_long(_SYS_FSMOUNT),
                ctypes.c_int(self._fd),
                ctypes.c_uint(_FSMOUNT_CLOEXEC),
                ctypes.c_uint(0),
            ),
            target,
        )
        try:
            _check(
                _libc.syscall(
                    ctypes.c_long(_SYS_MOVE_MOUNT),
                    ctypes.c_int(mount_fd),
                    b"",
                    ctypes.c_int(_AT_FDCWD),
                    _b(target),
                    ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH),
                ),
                target,
            )
        finally:
            os.close(mount_fd)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> FsContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_if(self, result: int, what: str) -> None:
        """Raise with the filesystem's own messages (read from the context) on failure."""
        if result >= 0:
            return
        code = ctypes.get_errno()
        messages = []
        while True:
            try:
                messages.append(os.read(self._fd, 1024).decode(errors="replace").strip())
            except OSError:
                break  # ENODATA: no more messages
        detail = "; ".join(m[2:] if m[1:2] == " " else m for m in messages)
        raise OSError(code, f"{os.strerror(code)}{f' ({detail})' if detail else ''}", what)
