"""Copying an overlay upper dir into a new snapshot, and comparing such trees.

The copy shares the inodes of identical files with an older snapshot; the comparison tells whether
two such trees differ in anything but their times.

Creating an inode is what a snapshot's files cost on a busy disk (a hardlink is ten
times cheaper than a new file on the ext4 of a CI VM), so a step whose upper dir was
written in memory is made a snapshot by linking every entry that an older snapshot
(``share_with``) holds identically -- same type, mode, owner, mtime, size, link
target, device, xattrs and bytes -- and copying only the rest. Snapshots are never
written once made (an overlay copies a lower file up before changing it), so sharing
an inode between two of them is safe.

The copy is faithful to what the upper dir means to overlayfs: whiteout devices and
the opaque xattr are kept, overlay's other bookkeeping xattrs (which name the upper's
own filesystem) are not; hardlinks within the tree stay hardlinks. Directories are
always made anew, their times set once their children are in.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Collection
from dataclasses import dataclass

from dockyard.layers import whiteouts

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
# Why a link to an identical file may fail, in which case the file is copied instead:
# the inode is at its link limit, or the older snapshot went away meanwhile.
_LINK_FALLBACK = (errno.EMLINK, errno.ENOENT, errno.EXDEV, errno.EPERM)


@dataclass
class TreeCopyStats:
    """How the entries of a copied tree were placed."""

    shared: int = 0  # linked to the older snapshot's identical inode
    copied: int = 0  # new inodes (directories included)


def copy_tree(source: str, target: str, *, share_with: str | None = None) -> TreeCopyStats:
    """Copy the tree ``source`` into the existing empty directory ``target``, sharing inodes.

    ``target``'s own metadata is set from ``source``'s; entries identical to those at the same paths
    under ``share_with`` are linked. Must run as root (owners, devices, trusted xattrs)."""
    stats = TreeCopyStats()
    src = dst = donor = -1
    try:
        src = os.open(source, _DIR)
        dst = os.open(target, _DIR)
        if share_with is not None:
            with contextlib.suppress(OSError):  # gone: a plain copy
                donor = os.open(share_with, _DIR)
        _Copier(stats, os.path.abspath(target)).directory(src, dst, donor, "")
        _set_meta(dst, os.fstat(src), _xattrs(src))
    finally:
        for fd in (src, dst, donor):
            if fd >= 0:
                os.close(fd)
    return stats


class _Copier:
    def __init__(self, stats: TreeCopyStats, target: str):
        self.stats = stats
        self.target = target
        self.inodes: dict[int, str] = {}  # source inode -> first target path (hardlinks)

    def directory(self, src: int, dst: int, donor: int, rel: str) -> None:
        """Copy the children of the directory ``src`` into ``dst``; ``donor`` is the same
        directory in the older snapshot (-1: none)."""
        with os.scandir(src) as listing:
            children = list(listing)
        for child in children:
            name = child.name
            path = f"{rel}/{name}" if rel else name
            st = os.lstat(name, dir_fd=src)
            if stat.S_ISDIR(st.st_mode):
                self._subdirectory(src, dst, donor, name, path, st)
                continue
            if st.st_nlink > 1 and (first := self.inodes.get(st.st_ino)) is not None:
                os.link(f"{self.target}/{first}", name, dst_dir_fd=dst, follow_symlinks=False)
                continue
            if st.st_nlink > 1:
                self.inodes[st.st_ino] = path
            if donor >= 0 and self._share(src, dst, donor, name, st):
                self.stats.shared += 1
                continue
            self._copy_entry(src, dst, name, st)
            self.stats.copied += 1

    def _subdirectory(
        self, src: int, dst: int, donor: int, name: str, path: str, st: os.stat_result
    ) -> None:
        os.mkdir(name, 0o700, dir_fd=dst)
        self.stats.copied += 1
        sub_src = sub_dst = sub_donor = -1
        try:
            sub_src = os.open(name, _DIR, dir_fd=src)
            sub_dst = os.open(name, _DIR, dir_fd=dst)
            if donor >= 0:
                with contextlib.suppress(OSError):  # not a directory there: nothing to share
                    sub_donor = os.open(name, _DIR, dir_fd=donor)
            self.directory(sub_src, sub_dst, sub_donor, path)
            _set_meta(sub_dst, st, _xattrs(sub_src))
        finally:
            for fd in (sub_src, sub_dst, sub_donor):
                if fd >= 0:
                    os.close(fd)

    def _share(self, src: int, dst: int, donor: int, name: str, st: os.stat_result) -> bool:
        """Link ``name`` from the older snapshot if it is identical there."""
        if not _identical(src, donor, name, st):
            return False
        try:
            os.link(name, name, src_dir_fd=donor, dst_dir_fd=dst, follow_symlinks=False)
        except OSError as e:
            if e.errno in _LINK_FALLBACK:
                return False
            raise
        return True

    def _copy_entry(self, src: int, dst: int, name: str, st: os.stat_result) -> None:
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFREG:
            data = os.open(name, _READ, dir_fd=src)
            try:
                out = os.open(name, _NEW_FILE, 0o600, dir_fd=dst)
                try:
                    _copy_data(data, out, st.st_size)
                    _set_meta(out, st, _xattrs(data))
                finally:
                    os.close(out)
            finally:
                os.close(data)
            return
        if kind == stat.S_IFLNK:
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
        else:  # whiteouts (0/0 character devices), devices, FIFOs, sockets
            os.mknod(name, kind | 0o600, st.st_rdev, dir_fd=dst)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
        if kind != stat.S_IFLNK:
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dst)
        for attr, value in (_entry_xattrs(src, name) or {}).items():
            os.setxattr(f"/proc/self/fd/{dst}/{name}", attr, value, follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)


def clone_tree(source: str, target: str, *, skip: Collection[str] = ()) -> TreeCopyStats:
    """Make the existing empty directory ``target`` a copy of the snapshot ``source`` that
    shares every inode but those of its directories.

    Non-directories are linked (copied where an inode is at its link limit), directories
    made anew with ``source``'s metadata, kept xattrs included. The non-directories at the
    relative paths in ``skip`` are left out. Unlike :func:`copy_tree` nothing is compared:
    ``source`` is a snapshot, which is never written once made."""
    stats = TreeCopyStats()
    src = os.open(source, _DIR)
    try:
        dst = os.open(target, _DIR)
        try:
            _clone_dir(_Copier(stats, os.path.abspath(target)), src, dst, "", frozenset(skip))
            _set_meta(dst, os.fstat(src), _xattrs(src))
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return stats


def _clone_dir(copier: _Copier, src: int, dst: int, rel: str, skip: frozenset[str]) -> None:
    with os.scandir(src) as listing:
        children = [(child.name, child.is_dir(follow_symlinks=False)) for child in listing]
    for name, is_dir in children:
        path = f"{rel}/{name}" if rel else name
        if is_dir:
            os.mkdir(name, 0o700, dir_fd=dst)
            copier.stats.copied += 1
            sub_src = os.open(name, _DIR, dir_fd=src)
            try:
                sub_dst = os.open(name, _DIR, dir_fd=dst)
                try:
                    _clone_dir(copier, sub_src, sub_dst, path, skip)
                    _set_meta(sub_dst, os.fstat(sub_src), _xattrs(sub_src))
                finally:
                    os.close(sub_dst)
            finally:
                os.close(sub_src)
            continue
        if path in skip:
            continue
        try:
            os.link(name, name, src_dir_fd=src, dst_dir_fd=dst, follow_symlinks=False)
            copier.stats.shared += 1
        except OSError as e:
            if e.errno != errno.EMLINK:
                raise
            copier._copy_entry(src, dst, name, os.lstat(name, dir_fd=src))
            copier.stats.copied += 1


def _identical(src: int, donor: int, name: str, st: os.stat_result) -> bool:
    """Is the non-directory ``name`` of ``src`` (``st``) the same in ``donor``, times
    included?"""
    try:
        other = os.lstat(name, dir_fd=donor)
    except OSError:
        return False
    if (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino):
        return True  # the very inode: a snapshot copied to share with itself
    if not _same_inode_data(st, other):
        return False
    if stat.S_ISREG(st.st_mode):
        return _same_file(src, donor, name, st.st_size)
    if stat.S_ISLNK(st.st_mode) and (
        os.readlink(name, dir_fd=src) != os.readlink(name, dir_fd=donor)
    ):
        return False
    return _entry_xattrs(src, name) == _entry_xattrs(donor, name)


def same_but_times(upper: str, snapshot: str) -> bool:
    """Do the fresh upper dir ``upper`` and the snapshot ``snapshot`` differ only in times?

    True if they hold the same entries -- names, types, modes, owners, sizes, bytes, link
    targets, devices, kept xattrs -- whatever their times: then they pack into layers that
    differ only in times. Conservatively False if ``upper`` holds hardlinks (a snapshot's link
    counts include other snapshots sharing its inodes, so its own cannot be compared)."""
    a = os.open(upper, _DIR)
    try:
        b = os.open(snapshot, _DIR)
        try:
            return _same_dir(a, b)
        finally:
            os.close(b)
    except FileNotFoundError:
        return False
    finally:
        os.close(a)


def _same_dir(a_dir: int, b_dir: int) -> bool:
    names = sorted(os.listdir(a_dir))
    if names != sorted(os.listdir(b_dir)):
        return False
    for name in names:
        a, b = os.lstat(name, dir_fd=a_dir), os.lstat(name, dir_fd=b_dir)
        if not _same_inode_data(a, b, times=False):
            return False
        kind = stat.S_IFMT(a.st_mode)
        if kind == stat.S_IFREG:
            if a.st_nlink > 1 or not _same_file(a_dir, b_dir, name, a.st_size):
                return False
        elif _entry_xattrs(a_dir, name) != _entry_xattrs(b_dir, name):
            return False
        elif kind == stat.S_IFDIR:
            a_sub = os.open(name, _DIR, dir_fd=a_dir)
            try:
                b_sub = os.open(name, _DIR, dir_fd=b_dir)
                try:
                    if not _same_dir(a_sub, b_sub):
                        return False
                finally:
                    os.close(b_sub)
            finally:
                os.close(a_sub)
        elif kind == stat.S_IFLNK and (
            os.readlink(name, dir_fd=a_dir) != os.readlink(name, dir_fd=b_dir)
        ):
            return False
    return True


def _same_file(a_dir: int, b_dir: int, name: str, size: int) -> bool:
    """Are the regular files ``name`` in both directories (``size`` bytes each) the
    same in xattrs and bytes?"""
    a = os.open(name, _READ, dir_fd=a_dir)
    try:
        b = os.open(name, _READ, dir_fd=b_dir)
        try:
            return _xattrs(a) == _xattrs(b) and _same_open_bytes(a, b, size)
        finally:
            os.close(b)
    finally:
        os.close(a)


def _same_inode_data(a: os.stat_result, b: os.stat_result, *, times: bool = True) -> bool:
    return (
        a.st_mode == b.st_mode
        and a.st_uid == b.st_uid
        and a.st_gid == b.st_gid
        and (stat.S_ISDIR(a.st_mode) or a.st_size == b.st_size)
        and (not times or a.st_mtime_ns == b.st_mtime_ns)
        and a.st_rdev == b.st_rdev
    )


def _same_open_bytes(a: int, b: int, size: int) -> bool:
    """Compare the first ``size`` bytes (both files have that size: snapshots and
    upper dirs do not change while they are compared). Reads ask for no more than is
    there: Python allocates the whole buffer asked for, which for a small file would
    cost more than the read; a big file is read into two buffers reused for each chunk
    (a fresh megabyte per read costs its page faults, more than the read)."""
    if size <= _CHUNK:
        return os.pread(a, size, 0) == os.pread(b, size, 0)
    ours, theirs = bytearray(_CHUNK), bytearray(_CHUNK)
    for offset in range(0, size, _CHUNK):
        n = min(_CHUNK, size - offset)
        if n < _CHUNK:
            ours, theirs = bytearray(n), bytearray(n)
        if os.preadv(a, [ours], offset) != n or os.preadv(b, [theirs], offset) != n:
            return False  # shorter than its size said: changed after all
        if ours != theirs:
            return False
    return True


def _copy_data(src: int, dst: int, size: int) -> None:
    sent = 0
    while sent < size and (n := os.sendfile(dst, src, None, size - sent)):
        sent += n


def _kept(attr: str) -> bool:
    """Overlay's bookkeeping names the upper's own filesystem; only opaque means
    something in a lower dir."""
    return not whiteouts.is_overlay_xattr(attr) or attr in whiteouts.OVERLAY_OPAQUE_XATTRS


def _xattrs(target: int | str) -> dict[str, bytes] | None:
    """The kept xattrs of ``target`` (an fd, or a path whose last component is not
    followed), None if none."""
    follow = isinstance(target, int)
    try:
        names = [a for a in os.listxattr(target, follow_symlinks=follow) if _kept(a)]
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        raise
    if not names:
        return None
    return {a: os.getxattr(target, a, follow_symlinks=follow) for a in sorted(names)}


def _entry_xattrs(dir_fd: int, name: str) -> dict[str, bytes] | None:
    return _xattrs(f"/proc/self/fd/{dir_fd}/{name}")


def _set_meta(fd: int, st: os.stat_result, xattrs: dict[str, bytes] | None) -> None:
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid bits
    for attr, value in (xattrs or {}).items():
        os.setxattr(fd, attr, value)
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
