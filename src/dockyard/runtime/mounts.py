"""Mounting and unmounting: overlay (any number of layers), bind, tmpfs, proc.

Mounts are made with the system calls directly (:mod:`dockyard.runtime.syscalls`), not
``mount(8)``: no process per mount, the real ``errno``, and the new mount API, which
``mount(8)`` from util-linux < 2.39 cannot use.

**The overlay option-length limit.** ``mount(2)`` copies at most one page (4096 bytes)
of options, so ``lowerdir=A:B:C...`` with 64-hex snapshot names under a store root fits
only a few dozen layers. :func:`mount_overlay` therefore:

1. uses the new mount API when the kernel has overlayfs's ``lowerdir+`` (Linux 6.8):
   one ``fsconfig`` call per layer, so there is no total length at all (overlayfs
   itself stacks up to 500 layers), and the kernel's own error text is reported;
2. otherwise uses ``mount(2)``: with the plain paths if they fit in a page, else with
   each directory opened ``O_PATH`` and named ``/proc/self/fd/N`` (18 bytes a layer,
   about 220 layers) -- short names that need no ``chdir`` (process-wide) and no fork.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Sequence

from dockyard.errors import ContainerError
from dockyard.mountinfo import mount_points_under
from dockyard.runtime import syscalls

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

OVERLAY_OPTIONS = ("index=off", "redirect_dir=off", "metacopy=off", "volatile")
"""Keep the upper dir a self-contained diff the layer packer can read: no renamed-dir
redirects, no metadata-only copy-ups, no inode index tying it to these lower dirs. And
``volatile`` (Linux 5.10, as podman does for ``--rm``): no sync of the whole upper
filesystem at unmount, which costs tens of milliseconds per container on a busy disk;
an upper dir that must survive a crash is synced when it is kept (see
:meth:`.Snapshots.commit`)."""

_UNSAFE_IN_OPTIONS = (",", ":", "\\", "=")


def mount_overlay(
    target: str | os.PathLike[str],
    lowers: Sequence[str | os.PathLike[str]],
    upper: str | os.PathLike[str],
    work: str | os.PathLike[str],
) -> None:
    """Mount overlayfs on ``target``.

    ``lowers`` top first, ``upper`` and ``work`` empty dirs on one filesystem (``work`` is overlay's
    scratch space)."""
    if not lowers:
        raise ContainerError("an overlay needs at least one lower directory")
    try:
        if _has_lowerdir_plus():
            _overlay_new_api(target, lowers, upper, work)
        else:
            _overlay_mount2(target, lowers, upper, work)
    except OSError as e:
        raise ContainerError(f"cannot mount overlay on {target}: {e.strerror}") from None


def _overlay_new_api(
    target: str | os.PathLike[str],
    lowers: Sequence[str | os.PathLike[str]],
    upper: str | os.PathLike[str],
    work: str | os.PathLike[str],
) -> None:
    with syscalls.FsContext("overlay") as fs:
        fs.set("source", "overlay")
        for lower in lowers:
            fs.set("lowerdir+", os.fspath(lower))
        fs.set("upperdir", os.fspath(upper))
        fs.set("workdir", os.fspath(work))
        for option in OVERLAY_OPTIONS:
            key, _, value = option.partition("=")
            fs.set(key, value or None)
        fs.mount(target)


def _overlay_mount2(
    target: str | os.PathLike[str],
    lowers: Sequence[str | os.PathLike[str]],
    upper: str | os.PathLike[str],
    work: str | os.PathLike[str],
) -> None:
    paths = [os.fspath(p) for p in (*lowers, upper, work)]
    options = overlay_options(paths[:-2], paths[-2], paths[-1])
    if len(options) < PAGE_SIZE and not any(c in p for p in paths for c in _UNSAFE_IN_OPTIONS):
        syscalls.mount("overlay", target, "overlay", 0, options)
        return
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        names = [f"/proc/self/fd/{fd}" for fd in fds]
        options = overlay_options(names[:-2], names[-2], names[-1])
        if len(options) >= PAGE_SIZE:
            raise ContainerError(
                f"{len(lowers)} layers do not fit in one page of overlay mount options on "
                f"this kernel; Linux 6.8 or later mounts any number"
            )
        syscalls.mount("overlay", target, "overlay", 0, options)
    finally:
        for fd in fds:
            os.close(fd)


def overlay_options(lowers: Sequence[str], upper: str, work: str) -> str:
    """The ``mount(2)`` option string for an overlay (lowers top first)."""
    return ",".join(
        (f"lowerdir={':'.join(lowers)}", f"upperdir={upper}", f"workdir={work}", *OVERLAY_OPTIONS)
    )


@functools.cache
def _has_lowerdir_plus() -> bool:
    """Does this kernel's overlayfs take ``lowerdir+`` through the new mount API?"""
    try:
        with syscalls.FsContext("overlay") as fs:
            fs.set("lowerdir+", "/")
    except OSError:
        return False  # ENOSYS: no new mount API; EINVAL: overlayfs before 6.8
    return True


def bind(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    readonly: bool = False,
    recursive: bool = True,
) -> None:
    """Bind ``source`` (a file or a directory) onto ``target`` (of the same kind)."""
    flags = syscalls.MS_BIND | (syscalls.MS_REC if recursive else 0)
    try:
        syscalls.mount(source, target, None, flags)
        if readonly:
            try:
                remount = syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY
                syscalls.mount(None, target, None, remount)
            except OSError:
                unmount(target)
                raise
    except OSError as e:
        raise ContainerError(f"cannot bind {source} on {target}: {e.strerror}") from None


def tmpfs(target: str | os.PathLike[str], *, size: int | None = None, mode: int = 0o1777) -> None:
    """Mount an empty tmpfs on ``target``, at most ``size`` bytes if given."""
    options = f"mode={mode:o}" + (f",size={size}" if size is not None else "")
    try:
        syscalls.mount("tmpfs", target, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, options)
    except OSError as e:
        raise ContainerError(f"cannot mount tmpfs on {target}: {e.strerror}") from None


def proc(target: str | os.PathLike[str]) -> None:
    """Mount procfs (of the caller's pid namespace) on ``target``."""
    flags = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
    try:
        syscalls.mount("proc", target, "proc", flags)
    except OSError as e:
        raise ContainerError(f"cannot mount proc on {target}: {e.strerror}") from None


def unmount(target: str | os.PathLike[str]) -> None:
    """Unmount ``target``; if it is busy, detach it lazily (it goes when unused).

    Not being a mount point (any more) is fine: cleanup may run twice.
    """
    try:
        syscalls.umount2(target, syscalls.UMOUNT_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ENOENT):
            return
        if e.errno != errno.EBUSY:
            raise ContainerError(f"cannot unmount {target}: {e.strerror}") from None
        try:
            syscalls.umount2(target, syscalls.MNT_DETACH | syscalls.UMOUNT_NOFOLLOW)
        except OSError as e2:
            raise ContainerError(f"cannot detach {target}: {e2.strerror}") from None


def unmount_all(directory: str | os.PathLike[str]) -> None:
    """Unmount everything mounted at or below ``directory``, innermost first.

    That is what a killed process left there."""
    for point in sorted(mount_points_under(directory), key=len, reverse=True):
        unmount(point)


def remove_tree(directory: str | os.PathLike[str]) -> None:
    """Delete the tree ``directory`` (missing is fine), detaching every mount below it first.

    Nothing is ever deleted through a mount, such as a bind of a host dir."""
    try:  # an empty dir (a step's scratch dir, often) needs no look at the mount table:
        os.rmdir(directory)  # rmdir refuses a mount point (EBUSY), deletes through none
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    for point in sorted(mount_points_under(directory), key=len, reverse=True):
        try:
            syscalls.umount2(point, syscalls.MNT_DETACH | syscalls.UMOUNT_NOFOLLOW)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOENT):
                raise ContainerError(f"not deleting {directory}: {point} stays mounted") from e
    import shutil  # here: with bz2 and lzma, ~3 ms of every command that imports this module

    shutil.rmtree(directory, ignore_errors=True)
