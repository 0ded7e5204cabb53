"""The destination side of COPY/ADD: writing into a rootfs we do not trust.

The rootfs belongs to an image: ``/app`` may be a symlink to ``/``, to ``../../..`` or
to a host path. Every lookup goes through ``openat2(RESOLVE_IN_ROOT)``
(:mod:`dockyard.runtime.inroot`), so such links resolve as the container would see
them, inside the rootfs; entries are then created relative to directory fds, the last
component never followed (``O_EXCL|O_NOFOLLOW``, ``mkdirat``, ``symlinkat``...), and
walking down a copied tree opens each directory with ``O_NOFOLLOW``.

What is written follows fsutil's ``copy.Copy`` as BuildKit calls it for Dockerfiles
(``CopyDirContents``, ``FollowLinks``, ``CreateDestPath``): see :meth:`Writer.place`
and :meth:`Writer.copy`.
"""

from __future__ import annotations

import errno
import functools
import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.builder.copier.modes import Chmod
from dockyard.builder.copier.sources import Node
from dockyard.builder.frontend.golang import clean_path
from dockyard.errors import DockyardError
from dockyard.layers import whiteouts
from dockyard.runtime import inroot

_DIR_FD = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CHILD_DIR = _DIR_FD | os.O_NOFOLLOW
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_SKIPPED_XATTRS = ("security.selinux",)
_FALLBACK_ERRNOS = (
    errno.EXDEV,
    errno.ENOSYS,
    errno.EINVAL,
    errno.EOPNOTSUPP,
    errno.EPERM,
    errno.EIO,
)


class CopyError(Exception):
    """Something BuildKit would also refuse; the message is what to tell the user."""


@dataclass(frozen=True)
class Meta:
    """The metadata of a source entry, as ``os.stat_result`` names it."""

    st_mode: int
    st_uid: int = 0
    st_gid: int = 0
    st_atime_ns: int = 0
    st_mtime_ns: int = 0
    st_nlink: int = 1
    st_ino: int = 0
    st_dev: int = 0
    st_rdev: int = 0


def _display(comps: list[str]) -> str:
    return "/" + "/".join(comps)


def _oserror(what: str, e: OSError) -> CopyError:
    return CopyError(f"{what}: {e.strerror or e}")


class Writer:
    """Writes into the directory ``root`` (a container rootfs), never outside it.

    ``owner`` is the ``--chown`` (uid, gid), None to keep the source's; ``chmod`` the
    ``--chmod``. Use as a context manager (it holds an fd of the root).
    """

    def __init__(self, root: str | os.PathLike[str], owner=None, chmod: Chmod | None = None):
        self.root = Path(root)
        self.owner: tuple[int, int] | None = owner
        self.chmod = chmod
        self.fd = os.open(self.root, _DIR_FD)
        self.inodes: dict[tuple[int, int], list[str]] = {}
        self._data = _DataCopier()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- paths ------------------------------------------------------------------------

    def resolve(self, path: str) -> tuple[list[str], list[str]]:
        """``path`` split into its longest existing part and the missing components after it.

        The existing part has its symlinks resolved inside the root.
        """
        try:
            real, missing = inroot.resolve(self.fd, path)
        except OSError as e:
            if e.errno == errno.ENOTDIR:
                raise CopyError(f"{path}: not a directory") from None
            raise _oserror(path, e) from None
        except DockyardError as e:  # a symlink loop
            raise CopyError(str(e)) from None
        return ([p for p in real.split("/") if p], missing)

    def open_dir(self, comps: list[str]) -> int:
        """A readable fd of the real directory ``comps`` (resolved inside the root)."""
        try:
            return inroot.open_in_root(self.fd, "/".join(comps), _DIR_FD)
        except OSError as e:
            raise _oserror(_display(comps), e) from None

    def is_dir(self, comps: list[str]) -> bool:
        if not comps:
            return True
        parent = self.open_dir(comps[:-1])
        try:
            return stat.S_ISDIR(os.lstat(comps[-1], dir_fd=parent).st_mode)
        finally:
            os.close(parent)

    def mkdir_all(
        self,
        path: str,
        mode: int,
        owner: tuple[int, int] | None,
        mtime_ns: int | None = None,
    ) -> list[list[str]]:
        """fsutil's ``MkdirAll``: make the directory ``path`` and its missing parents.

        They get ``mode``, are chowned to ``owner`` and get ``mtime_ns`` if given; an
        existing non-directory on the way is an error. Return the real paths created,
        outermost first.
        """
        real, missing = self.resolve(path)
        if not missing:
            if not self.is_dir(real):
                raise CopyError(f"mkdir {path}: not a directory")
            return []
        created: list[list[str]] = []
        fd = self.open_dir(real)
        try:
            for name in missing:
                current = [*real, name]
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:
                    pass  # raced with ourselves? check what is there below
                except OSError as e:
                    raise _oserror(f"mkdir {_display(current)}", e) from None
                else:
                    os.chmod(name, mode, dir_fd=fd)  # the umask had its say in mkdir
                    if owner is not None:
                        os.chown(name, *owner, dir_fd=fd, follow_symlinks=False)
                    if mtime_ns is not None:
                        os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=fd, follow_symlinks=False)
                    created.append(current)
                try:
                    child = os.open(name, _CHILD_DIR, dir_fd=fd)
                except OSError as e:
                    raise _oserror(f"mkdir {_display(current)}", e) from None
                os.close(fd)
                fd = child
                real = current
        finally:
            os.close(fd)
        return created

    # -- one source -------------------------------------------------------------------

    def place(self, dest: str, name: str, is_dir: bool) -> list[str]:
        """Where one source lands (fsutil's ``Copy`` up to ``prepareTargetDir``).

        The destination directory is made first if ``dest`` ends with ``/``, else its
        parent; a non-directory copied onto an existing directory goes inside it as
        ``name``; a directory's contents are copied into ``dest`` (made if missing).
        Return the real path of the entry to write.
        """
        clean = clean_path("/" + dest)
        as_dir = dest.endswith(("/", "/.")) or clean == "/"
        dir_mode = self.chmod.dir_mode if self.chmod is not None else 0o755
        self.mkdir_all(clean if as_dir else posixpath.dirname(clean), dir_mode, self.owner)
        real, missing = self.resolve(clean)
        exists = not missing
        into = not is_dir and exists and self.is_dir(real)
        comps = [*real, name] if into else [*real, *missing]
        target = comps if (is_dir and not exists) else comps[:-1]
        self.mkdir_all("/" + "/".join(target), dir_mode, self.owner)
        return comps

    def copy(
        self,
        comps: list[str],
        meta: Meta | os.stat_result,
        *,
        node: Node | None = None,
        src_dir: int | None = None,
        content: Callable[[], int] | bytes | None = None,
        link: str | None = None,
        reset_owner: bool = False,
        xattrs_from: str | None = None,
    ) -> None:
        """Copy one source to the real path ``comps`` (from :meth:`place`).

        A directory needs ``node`` (what to copy under it) and ``src_dir`` (an fd of
        it); a regular file ``content`` (an opener returning a readable fd, or bytes); a
        symlink ``link``. ``reset_owner``: the source's owners count as 0:0.
        """
        self.inodes = {}  # fsutil: one copier, so one hardlink map, per source
        self._reset = reset_owner
        if stat.S_ISDIR(meta.st_mode):
            assert node is not None and src_dir is not None
            self._copy_top_dir(comps, meta, node, src_dir, xattrs_from)
            return
        parent = self.open_dir(comps[:-1])
        try:
            name = comps[-1]
            self._make_empty(parent, name, comps)
            self._create(parent, name, comps, meta, content, link, xattrs_from)
        finally:
            os.close(parent)

    def _copy_top_dir(
        self, comps: list[str], meta, node: Node, src_dir: int, xattrs_from: str | None
    ) -> None:
        created = False
        if not comps:
            parent, name = -1, None
            dst = os.dup(self.fd)
        else:
            parent, name = self.open_dir(comps[:-1]), comps[-1]
            try:
                created = self._make_dir(parent, name, comps, meta, overwrite=False)
                dst = os.open(name, _CHILD_DIR, dir_fd=parent)
            except BaseException:
                os.close(parent)
                raise
        try:
            self._copy_children(src_dir, node, dst, comps, fresh=created)
            if created:
                self._set_meta(parent, name, meta, fd=dst, xattrs_from=xattrs_from)
            else:  # fsutil: an existing top directory only gets the source's times
                os.utime(dst, ns=(meta.st_atime_ns, meta.st_mtime_ns))
        finally:
            os.close(dst)
            if parent >= 0:
                os.close(parent)

    # -- trees ------------------------------------------------------------------------

    def _copy_children(
        self, src_dir: int, node: Node, dst_dir: int, comps: list[str], *, fresh: bool = False
    ) -> None:
        """Copy ``node``'s children; ``fresh``: ``dst_dir`` was just made, so nothing in
        it can be in the way (no lookup per entry)."""
        for child in node.children:
            name = child.name
            path = [*comps, name]
            try:
                st = os.lstat(name, dir_fd=src_dir)
            except OSError as e:
                raise _oserror(f"lstat {name}", e) from None
            if stat.S_IFMT(st.st_mode) != child.kind:
                raise CopyError(f"{_display(path)}: source changed during the build")
            source = f"/proc/self/fd/{src_dir}/{name}"
            if child.kind != stat.S_IFDIR:
                if not fresh:
                    self._make_empty(dst_dir, name, path)
                self._create(
                    dst_dir,
                    name,
                    path,
                    st,
                    functools.partial(os.open, name, _READ, dir_fd=src_dir),
                    os.readlink(name, dir_fd=src_dir) if child.kind == stat.S_IFLNK else None,
                    source,
                )
                continue
            if child.included:
                created = self._make_dir(dst_dir, name, path, st, overwrite=True)
            else:
                created = self._make_dir(dst_dir, name, path, st, overwrite=False, lazy=True)
                if created:  # fsutil's delayed parent directories get their metadata now
                    self._set_meta(dst_dir, name, st, xattrs_from=source)
            sub_src = os.open(name, _CHILD_DIR, dir_fd=src_dir)
            try:
                sub_dst = os.open(name, _CHILD_DIR, dir_fd=dst_dir)
                try:
                    self._copy_children(sub_src, child, sub_dst, path, fresh=created)
                    if child.included:
                        self._set_meta(dst_dir, name, st, fd=sub_dst, xattrs_from=source)
                finally:
                    os.close(sub_dst)
            finally:
                os.close(sub_src)

    def _make_dir(
        self, parent: int, name: str, comps: list[str], meta, *, overwrite: bool, lazy=False
    ) -> bool:
        """fsutil's ``copyDirectoryOnly``: True if it made the directory. An existing one
        is kept (a lazily made parent takes the source's mode, unfiltered by --chmod)."""
        try:
            existing = os.lstat(name, dir_fd=parent).st_mode
        except FileNotFoundError:
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except OSError as e:
                raise _oserror(f"mkdir {_display(comps)}", e) from None
            return True
        if not stat.S_ISDIR(existing):
            raise CopyError(f"cannot copy to non-directory: {_display(comps)}")
        if lazy:
            os.chmod(name, stat.S_IMODE(meta.st_mode), dir_fd=parent)
        return False

    def _make_empty(self, parent: int, name: str, comps: list[str]) -> None:
        """fsutil's ``ensureEmptyFileTarget``: whatever non-directory is there goes."""
        try:
            existing = os.lstat(name, dir_fd=parent).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(existing):
            raise CopyError(f"cannot replace to directory {_display(comps)} with file")
        os.unlink(name, dir_fd=parent)

    def _create(
        self,
        parent: int,
        name: str,
        comps: list[str],
        meta,
        content: Callable[[], int] | bytes | None,
        link: str | None,
        xattrs_from: str | None,
    ) -> None:
        kind = stat.S_IFMT(meta.st_mode)
        try:
            if kind == stat.S_IFREG:
                if meta.st_nlink > 1:
                    key = (meta.st_dev, meta.st_ino)
                    first = self.inodes.get(key)
                    if first is not None:
                        self._hardlink(first, parent, name)
                        self._set_meta(parent, name, meta)
                        return
                    self.inodes[key] = comps
                fd = os.open(name, _NEW_FILE, 0o600, dir_fd=parent)
                try:
                    if isinstance(content, bytes) or content is None:
                        _write_all(fd, content or b"")
                        self._set_meta(parent, name, meta, fd=fd, xattrs_from=xattrs_from)
                        return
                    src = content()
                    try:
                        src_st = os.fstat(src)
                        if not stat.S_ISREG(src_st.st_mode):
                            raise CopyError(f"{_display(comps)}: source changed during the build")
                        self._data.copy(src, fd, src_st.st_size)
                        # xattrs read through the open source: a /proc path costs more
                        xattrs = src if xattrs_from is not None else None
                        self._set_meta(parent, name, meta, fd=fd, xattrs_from=xattrs)
                    finally:
                        os.close(src)
                finally:
                    os.close(fd)
                return
            if kind == stat.S_IFLNK:
                assert link is not None
                os.symlink(link, name, dir_fd=parent)
            elif kind == stat.S_IFSOCK:  # fsutil copies a socket as an empty file
                os.close(os.open(name, _NEW_FILE, 0o600, dir_fd=parent))
            else:  # devices, FIFOs
                os.mknod(name, kind | 0o600, meta.st_rdev, dir_fd=parent)
        except OSError as e:
            raise _oserror(f"failed to copy {_display(comps)}", e) from None
        self._set_meta(parent, name, meta, xattrs_from=xattrs_from)

    def _hardlink(self, first: list[str], parent: int, name: str) -> None:
        first_parent = self.open_dir(first[:-1])
        try:
            os.link(
                first[-1], name, src_dir_fd=first_parent, dst_dir_fd=parent, follow_symlinks=False
            )
        finally:
            os.close(first_parent)

    # -- metadata ---------------------------------------------------------------------

    def _set_meta(
        self,
        parent: int,
        name: str | None,
        meta,
        *,
        fd: int | None = None,
        xattrs_from: int | str | None = None,
    ) -> None:
        """fsutil's ``copyFileInfo`` then ``copyXAttrs``: owner, mode (--chmod applied;
        not for symlinks), times, xattrs. Through ``fd`` when given, else ``name`` in
        ``parent`` (never followed)."""
        if self.owner is not None:
            uid, gid = self.owner
        elif self._reset:
            uid = gid = 0
        else:
            uid, gid = meta.st_uid, meta.st_gid
        is_link = stat.S_ISLNK(meta.st_mode)
        mode = self.chmod.apply(meta.st_mode) if self.chmod else stat.S_IMODE(meta.st_mode)
        times = (meta.st_atime_ns, meta.st_mtime_ns)
        if fd is not None:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.utime(fd, ns=times)
            target: int | str = fd
        else:
            assert name is not None
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
            if not is_link:
                os.chmod(name, mode, dir_fd=parent)
            os.utime(name, ns=times, dir_fd=parent, follow_symlinks=False)
            target = f"/proc/self/fd/{parent}/{name}"
        if xattrs_from is not None:
            _copy_xattrs(xattrs_from, target)


def _copy_xattrs(source: int | str, target: int | str) -> None:
    """Best effort, as BuildKit (it logs failures): not SELinux labels, which belong to
    the host, nor overlayfs's own attributes. ``source``: an fd, or a path not
    followed."""
    follow = isinstance(source, int)
    try:
        names = os.listxattr(source, follow_symlinks=follow)
    except OSError:
        return
    for attr in names:
        if attr in _SKIPPED_XATTRS or whiteouts.is_overlay_xattr(attr):
            continue
        try:
            value = os.getxattr(source, attr, follow_symlinks=follow)
            os.setxattr(target, attr, value, follow_symlinks=isinstance(target, int))
        except OSError:
            continue


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _DataCopier:
    """Copies file data kernel-side: copy_file_range (reflinks where the filesystem can),
    else sendfile, plain reads as a last resort. A method that fails once is not tried
    again by this copier: copy_file_range into an overlay mount always fails (EXDEV),
    and a COPY of many small files would pay that failed call for each of them."""

    def __init__(self) -> None:
        self._methods = [self._copy_file_range, self._sendfile]

    def copy(self, src: int, dst: int, size: int) -> None:
        """Copy the ``size`` bytes of ``src`` (at offset 0) to the empty file ``dst``."""
        if size == 0:
            return
        for method in list(self._methods):
            try:
                method(src, dst, size)
                return
            except OSError as e:
                if e.errno not in _FALLBACK_ERRNOS:
                    raise
                self._methods.remove(method)
                os.lseek(src, os.lseek(dst, 0, os.SEEK_CUR), os.SEEK_SET)  # resume there
        while data := os.read(src, _CHUNK):
            _write_all(dst, data)

    @staticmethod
    def _copy_file_range(src: int, dst: int, size: int) -> None:
        copied = 0
        while copied < size and (n := os.copy_file_range(src, dst, size - copied)):
            copied += n

    @staticmethod
    def _sendfile(src: int, dst: int, size: int) -> None:
        sent = os.lseek(dst, 0, os.SEEK_CUR)
        while sent < size and (n := os.sendfile(dst, src, None, size - sent)):
            sent += n
