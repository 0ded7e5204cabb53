"""Applying layers (tar changesets) onto a rootfs, without ever writing outside it.

Nothing here trusts a path from a layer. Each entry's path is cleaned lexically (an
entry whose ``..`` climbs above the root is refused), then walked one component at a
time through directory fds opened with ``O_NOFOLLOW``: a symlink met on the way is
resolved as if the rootfs were ``/`` (absolute targets start at the rootfs, ``..``
stops at it), like Go's securejoin, whether a lower layer or this one created it. The
last component is never followed: whatever is there is unlinked before it is
replaced, and files are created with ``O_CREAT|O_EXCL|O_NOFOLLOW``. Because the walk
holds an fd, a symlink swapped in behind our back cannot redirect a write.

``tarfile.extract``/``extractall`` are never used: among other things they apply a
hardlink's mode and owner to whatever inode the link points at.

Whiteouts follow the OCI image spec: ``.wh.<name>`` and ``.wh..wh..opq`` remove what
*lower* layers put there; what this layer adds stays, wherever it sits in the tar.

Holes stay holes: a sparse member (GNU or PAX sparse formats) gets only its data
regions written, and in any file a whole block of zeros (:data:`HOLE_BLOCK`) is
skipped rather than written, so a tiny layer claiming a huge file of zeros costs no
disk. What one layer may expand to and write is capped (:mod:`.limits`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from dockyard.errors import LayerError
from dockyard.layers import tarformat, whiteouts
from dockyard.layers.compression import CHUNK, open_decompressed
from dockyard.layers.limits import Limits, Meter, MeteredReader
from dockyard.oci.streams import Reader

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LIST_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_T = TypeVar("_T")
_MAX_SYMLINKS = 40  # what Linux follows in one path before ELOOP
_XATTR_REFUSED = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES)
_NS = 1_000_000_000
_XATTR_PAX = tarformat.XATTR_PAX_PREFIX
HOLE_BLOCK = 64 << 10  # a run of zeros this long, so aligned in the file, is left a hole
_ZEROS = bytes(HOLE_BLOCK)


def apply_layer(
    tar_stream: Reader,
    rootfs: str | os.PathLike[str],
    *,
    as_root: bool | None = None,
    name: str | None = None,
) -> list[str]:
    """Apply one uncompressed layer tar, read sequentially, onto the directory ``rootfs``.

    Return warnings about what was not applied: device nodes and ownership need root
    (``as_root`` defaults to ``os.geteuid() == 0``), some xattrs need privileges or
    filesystem support. Raise :class:`LayerError` naming the entry for hostile or
    malformed content, :class:`.LayerTooLarge` past the limits of :mod:`.limits`; errors
    start with ``name`` (e.g. ``layer sha256:...``) if given. ``rootfs`` is then
    half-applied and should be discarded. The stream is read to its end, so a
    digest-verifying stream gets to verify.
    """
    root = os.geteuid() == 0 if as_root is None else as_root
    return apply_with(
        lambda root_fd, meter: _Applier(root_fd, root, meter), tar_stream, rootfs, name=name
    )


def apply_with(
    make_applier: Callable[[int, Meter], _Applier],
    tar_stream: Reader,
    rootfs: str | os.PathLike[str],
    *,
    name: str | None = None,
) -> list[str]:
    """Drive an applier over a streamed layer tar.

    The applier is made for the rootfs's dir fd and the layer's meter; the loop is shared by
    :func:`apply_layer` and the runtime's overlay-format extraction. Every byte read, and every byte
    written, is metered against the limits in the environment."""
    meter = Meter(Limits.from_env())
    with layer_errors(name):
        root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            applier = make_applier(root_fd, meter)
            for member, tar in metered_members(tar_stream, meter):
                applier.apply(member, tar)
            applier.finish()
        finally:
            os.close(root_fd)
    return applier.warnings


def metered_members(
    tar_stream: Reader, meter: Meter
) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """The members of a layer tar (see :func:`read_members`), every byte read metered.

    After the last, the stream is read to its end (so that a verifying stream verifies). Iterate
    inside :func:`layer_errors`."""
    stream = MeteredReader(tar_stream, meter)
    yield from read_members(stream)
    while stream.read(CHUNK):
        pass


@contextlib.contextmanager
def layer_errors(name: str | None = None) -> Iterator[None]:
    """Errors of reading a layer as :class:`LayerError` (a malformed tar too).

    Their message starts with ``name`` if given."""
    try:
        try:
            yield
        except tarfile.TarError as e:
            raise LayerError(f"malformed layer tar: {e}") from None
    except LayerError as e:
        if name is None:
            raise
        raise type(e)(f"{name}: {e}") from e


def flatten(
    blobs: Iterable[Reader],
    rootfs: str | os.PathLike[str],
    *,
    as_root: bool | None = None,
    names: Sequence[str] = (),
) -> list[str]:
    """Apply layer blobs (gzip, zstd or plain tar), bottom layer first, into ``rootfs``.

    This is an image's filesystem, as ``dockyard export`` writes it. ``rootfs`` is
    created if missing and should be empty. Streams are read to the end, not closed.
    An error in the i-th blob starts with ``names[i]`` if given. Return the warnings of
    :func:`apply_layer`.
    """
    os.makedirs(rootfs, exist_ok=True)
    warnings: list[str] = []
    for i, blob in enumerate(blobs):
        name = names[i] if i < len(names) else None
        try:
            tar_stream = open_decompressed(blob)
        except LayerError as e:
            raise LayerError(f"{name}: {e}" if name else str(e)) from e
        warnings += apply_layer(tar_stream, rootfs, as_root=as_root, name=name)
    return warnings


def clean_path(name: str) -> list[str]:
    """The components of a member path relative to the root, ``..`` resolved lexically.

    Leading ``/`` and ``./`` go; ``[]`` is the root itself. Raise :class:`LayerError`
    if ``..`` climbs above the root.
    """
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if not parts:
                raise LayerError(f"layer entry {name!r}: path escapes the root")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return parts


class _Applier:
    """The state of applying one layer: what it created, what waits for the end."""

    def __init__(self, root_fd: int, as_root: bool, meter: Meter):
        self._root = root_fd
        self._as_root = as_root
        self._meter = meter  # what the layer has expanded to and written
        self.warnings: list[str] = []
        # Real paths ("a/b") this layer created, and all their ancestors: whiteouts
        # and opaque markers only remove what is not in here.
        self._ours: set[str] = set()
        # Entries not created (device nodes without root), so hardlinks to them are too.
        self._skipped: set[str] = set()
        # Directory mode and mtime (ns), each None to leave it, set at the end: adding
        # children changes the mtime, and a read-only mode would stop a non-root caller
        # from adding them. A directory this layer changes without an entry of its own
        # gets its mtime back, as umoci does: a rootfs should not depend on when it was
        # unpacked.
        self._dirs: dict[str, tuple[int | None, int | None]] = {}

    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        try:
            self._apply(member, tar)
        except OSError as e:
            raise LayerError(f"layer entry {member.name!r}: {e.strerror or e}") from e
        except ValueError as e:  # a NUL in a (PAX) name
            raise LayerError(f"layer entry {member.name!r}: {e}") from e

    def _apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        entry = member.name
        parts = clean_path(entry)
        if not parts:
            if not member.isdir():
                raise LayerError(f"layer entry {entry!r}: names the root but is not a directory")
            self._chown_xattrs(self._root, None, member, entry)
            self._dirs[""] = (member.mode & 0o7777, _mtime_ns(member))
            return
        *parent, name = parts
        if parts[0].startswith(whiteouts.META_PREFIX) and parts != [whiteouts.OPAQUE]:
            return  # AUFS bookkeeping at the top (.wh..wh.plnk/, .wh..wh.aufs): not content
        if name.startswith(whiteouts.PREFIX):
            self._whiteout(parent, name, entry)
            return
        walked = self._walk(parent, entry, create=True)
        assert walked is not None  # create=True makes what is missing
        dir_fd, real = walked
        key = "/".join((*real, name))
        try:
            self._changing("/".join(real), dir_fd)
            if self._create(dir_fd, name, key, member, tar):
                self._mark_ours(real, key)
        finally:
            os.close(dir_fd)

    def finish(self) -> None:
        """Set directory modes and mtimes, deepest first."""
        for key in sorted(self._dirs, reverse=True):
            try:
                self._finish_dir(key)
            except OSError as e:
                raise LayerError(f"layer directory {key!r}: {e.strerror or e}") from e

    def _finish_dir(self, key: str) -> None:
        mode, mtime = self._dirs[key]
        if not key:
            if mode is not None:
                os.chmod(self._root, mode)
            if mtime is not None:
                os.utime(self._root, ns=(mtime, mtime))
            return
        *parent, name = key.split("/")
        walked = self._walk(parent, key, create=False, follow=False)
        if walked is None:
            return  # removed or replaced later in the layer
        dir_fd, _ = walked
        try:
            if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
                if mode is not None:
                    os.chmod(name, mode, dir_fd=dir_fd, follow_symlinks=False)
                if mtime is not None:
                    os.utime(name, ns=(mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        finally:
            os.close(dir_fd)

    # -- resolving paths inside the root --------------------------------------------

    def _walk(
        self, parts: list[str], entry: str, *, create: bool, follow: bool = True
    ) -> tuple[int, list[str]] | None:
        """Open the directory ``parts`` names inside the root; return its fd and real path.

        Symlinks on the way are resolved inside the root, or with ``follow=False`` end
        the walk. With ``create``, missing directories are made (mode 0755) and a
        component that is not a directory is an error; without, both return None.
        """
        fd = os.dup(self._root)
        real: list[str] = []
        todo = parts[::-1]
        links = 0
        try:
            while todo:
                part = todo.pop()
                if part in ("", "."):
                    continue
                if part == "..":
                    if real:
                        real.pop()
                        os.close(fd)
                        fd = -1
                        fd = self._reopen(real, entry)
                    continue
                child = _open_dir(fd, part)
                if child == _MISSING:
                    if not create:
                        return None
                    self._changing("/".join(real), fd)
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass  # lost a race; look again
                    else:
                        self._dirs.setdefault("/".join((*real, part)), (0o755, None))
                    todo.append(part)
                    continue
                if child == _NOT_DIR:
                    target = _readlink(fd, part) if follow else None
                    if target is None:
                        if not create:
                            return None
                        where = "/".join((*real, part))
                        raise LayerError(f"layer entry {entry!r}: {where} is not a directory")
                    links += 1
                    if links > _MAX_SYMLINKS:
                        raise LayerError(f"layer entry {entry!r}: too many levels of symlinks")
                    if target.startswith("/"):
                        os.close(fd)
                        fd = -1
                        fd = os.dup(self._root)
                        real.clear()
                    todo.extend(reversed(target.split("/")))
                    continue
                os.close(fd)
                fd = child
                real.append(part)
            result, fd = fd, -1
            return result, real
        finally:
            if fd >= 0:
                os.close(fd)

    def _reopen(self, real: list[str], entry: str) -> int:
        """An fd of the real directory path ``real``, walked again from the root."""
        fd = os.dup(self._root)
        try:
            for part in real:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError as e:
            os.close(fd)
            raise LayerError(f"layer entry {entry!r}: rootfs changed under us: {e}") from e
        return fd

    def _changing(self, key: str, dir_fd: int) -> None:
        """Directory ``key`` is about to gain or lose an entry: note its mtime first."""
        if key not in self._dirs:
            self._dirs[key] = (None, os.fstat(dir_fd).st_mtime_ns)

    def _mark_ours(self, real: list[str], key: str) -> None:
        self._ours.add(key)
        for depth in range(len(real), 0, -1):
            ancestor = "/".join(real[:depth])
            if ancestor in self._ours:
                break  # and so are all of its ancestors
            self._ours.add(ancestor)

    # -- whiteouts --------------------------------------------------------------------

    def _whiteout(self, parent: list[str], name: str, entry: str) -> None:
        if name != whiteouts.OPAQUE and name.startswith(whiteouts.META_PREFIX):
            return  # AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): no meaning here
        target = name[len(whiteouts.PREFIX) :]
        if name != whiteouts.OPAQUE and target in ("", ".", ".."):
            raise LayerError(f"layer entry {entry!r}: whiteout names no entry")
        walked = self._walk(parent, entry, create=False)
        if walked is None:
            return  # its directory does not exist: nothing below to delete
        dir_fd, real = walked
        try:
            self._changing("/".join(real), dir_fd)
            if name == whiteouts.OPAQUE:
                if real:
                    self._mark_ours(real[:-1], "/".join(real))
                for child in _listdir(dir_fd):
                    self._remove_lower(dir_fd, child, "/".join((*real, child)))
            else:
                self._remove_lower(dir_fd, target, "/".join((*real, target)))
        finally:
            os.close(dir_fd)

    def _remove_lower(self, dir_fd: int, name: str, key: str) -> None:
        """Remove what lower layers have at ``name``, keeping what this layer made."""
        if key not in self._ours:
            _remove(dir_fd, name)
            return
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            return  # ours and not a directory: nothing of the lower layers is left in it
        try:
            self._changing(key, child)
            for grandchild in _listdir(child):
                self._remove_lower(child, grandchild, f"{key}/{grandchild}")
        finally:
            os.close(child)

    # -- creating entries -------------------------------------------------------------

    def _create(
        self, dir_fd: int, name: str, key: str, member: tarfile.TarInfo, tar: tarfile.TarFile
    ) -> bool:
        """Make the entry ``name`` in ``dir_fd``; False if it was skipped."""
        entry = member.name
        if member.isdir():
            try:
                existing = os.lstat(name, dir_fd=dir_fd).st_mode
            except FileNotFoundError:
                existing = 0
            if not stat.S_ISDIR(existing):  # a symlink to a directory is replaced too
                _remove(dir_fd, name)
                os.mkdir(name, 0o700, dir_fd=dir_fd)
            self._chown_xattrs(dir_fd, name, member, entry)
            self._dirs[key] = (member.mode & 0o7777, _mtime_ns(member))
            return True
        if member.islnk():
            return self._hardlink(dir_fd, name, key, member)
        if (member.ischr() or member.isblk()) and not self._as_root:
            self.warnings.append(f"{entry}: device node not created (needs root)")
            self._skipped.add(key)
            return False
        _remove(dir_fd, name)
        if member.isreg():
            self._write_file(dir_fd, name, member, tar)
            return True
        if member.issym():
            os.symlink(member.linkname, name, dir_fd=dir_fd)
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            device = os.makedev(member.devmajor, member.devminor)
            os.mknod(name, kind | 0o600, device, dir_fd=dir_fd)
        elif member.isfifo():
            os.mkfifo(name, 0o600, dir_fd=dir_fd)
        else:
            raise LayerError(f"layer entry {entry!r}: unsupported tar entry type {member.type!r}")
        self._chown_xattrs(dir_fd, name, member, entry)
        if not member.issym():  # Linux has no symlink modes
            os.chmod(name, member.mode & 0o7777, dir_fd=dir_fd, follow_symlinks=False)
        mtime = _mtime_ns(member)
        os.utime(name, ns=(mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)
        return True

    def _write_file(
        self, dir_fd: int, name: str, member: tarfile.TarInfo, tar: tarfile.TarFile
    ) -> None:
        regions = data_regions(member)
        self._meter.expand(member.size - sum(length for _, length in regions))  # the holes
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            # The stored data regions follow one another in the tar: read them in order
            # from the stream itself, which tarfile has just left at the member's data.
            if tar.fileobj.tell() != member.offset_data:
                raise LayerError(f"layer entry {member.name!r}: data not where expected")
            end = 0  # of what was written
            for offset, length in regions:
                end = self._copy_region(tar.fileobj.read, fd, offset, length, member.name) or end
            if end < member.size:
                os.ftruncate(fd, member.size)  # the holes at the end
            if self._as_root:
                os.chown(fd, member.uid, member.gid)
            os.chmod(fd, member.mode & 0o7777)  # after chown, which clears setuid bits
            self._set_xattrs(fd, member)
            mtime = _mtime_ns(member)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)

    def _copy_region(
        self, read: Callable[[int], bytes], fd: int, offset: int, length: int, entry: str
    ) -> int:
        """Copy ``length`` bytes got from ``read`` to ``fd`` at ``offset``, blocks of zeros
        left as holes; return where the last byte written ends (0 if none was)."""
        end = offset + length
        written_end = 0
        while offset < end:
            data = read(min(end - offset, CHUNK))
            if not data:
                raise LayerError(f"layer entry {entry!r}: data ends early")
            for start, stop in nonzero_runs(data, offset):
                self._meter.write(stop - start)
                view = memoryview(data)[start:stop]
                at = offset + start
                while view:
                    written = os.pwrite(fd, view, at)
                    view, at = view[written:], at + written
                written_end = at
            offset += len(data)
        return written_end

    def _hardlink(self, dir_fd: int, name: str, key: str, member: tarfile.TarInfo) -> bool:
        """Link ``name`` to the member's target, itself resolved inside the root.

        No metadata is applied: it belongs to the target's inode and came with it.
        """
        entry = member.name
        target = clean_path(member.linkname)
        if not target:
            raise LayerError(f"layer entry {entry!r}: hardlink to the root")
        missing = LayerError(f"layer entry {entry!r}: hardlink target {member.linkname!r} missing")
        walked = self._walk(target[:-1], entry, create=False)
        if walked is None:
            raise missing
        target_fd, real = walked
        try:
            target_key = "/".join((*real, target[-1]))
            if target_key in self._skipped:
                self.warnings.append(f"{entry}: hardlink not created: its target was skipped")
                self._skipped.add(key)
                return False
            try:
                mode = os.lstat(target[-1], dir_fd=target_fd).st_mode
            except FileNotFoundError:
                raise missing from None
            if stat.S_ISDIR(mode):
                raise LayerError(
                    f"layer entry {entry!r}: hardlink target {member.linkname!r} is a directory"
                )
            if target_key == key:
                return True  # a link to itself: already there
            _remove(dir_fd, name)
            os.link(
                target[-1], name, src_dir_fd=target_fd, dst_dir_fd=dir_fd, follow_symlinks=False
            )
        finally:
            os.close(target_fd)
        return True

    # -- metadata ---------------------------------------------------------------------

    def _chown_xattrs(
        self, dir_fd: int, name: str | None, member: tarfile.TarInfo, entry: str
    ) -> None:
        """Owner (as root) and xattrs of ``name`` in ``dir_fd``, never following it;
        ``name=None`` means ``dir_fd`` itself."""
        if self._as_root:
            if name is None:
                os.chown(dir_fd, member.uid, member.gid)
            else:
                os.chown(name, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)
        if any(k.startswith(_XATTR_PAX) for k in member.pax_headers):
            # lsetxattr has no *at form: reach the entry through our fd of its directory.
            self._set_xattrs(dir_fd if name is None else f"/proc/self/fd/{dir_fd}/{name}", member)

    def _set_xattrs(self, target: int | str, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(_XATTR_PAX):
                continue
            attr = key[len(_XATTR_PAX) :]
            if whiteouts.is_overlay_xattr(attr):
                self.warnings.append(f"{member.name}: overlay xattr {attr} not applied")
                continue
            raw = value.encode("utf-8", "surrogateescape")
            try:
                # An fd is the file itself; a path's last component is never followed.
                os.setxattr(target, attr, raw, follow_symlinks=isinstance(target, int))
            except OSError as e:
                if e.errno not in _XATTR_REFUSED:
                    raise
                self.warnings.append(f"{member.name}: xattr {attr} not set: {e.strerror}")


_MISSING, _NOT_DIR = -1, -2


def _open_dir(dir_fd: int, name: str) -> int:
    """An ``O_PATH`` fd of the directory ``name``, never following it; or _MISSING, or
    _NOT_DIR (a symlink or anything else that is not a directory)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return _MISSING
    except OSError as e:
        if e.errno in (errno.ENOTDIR, errno.ELOOP):
            return _NOT_DIR
        raise


def _readlink(dir_fd: int, name: str) -> str | None:
    """The target of the symlink ``name``, or None if it is not a symlink."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None


def _listdir(dir_fd: int) -> list[str]:
    fd = os.open(".", _LIST_FLAGS, dir_fd=dir_fd)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _remove(dir_fd: int, name: str) -> None:
    """Remove whatever ``name`` is (a whole tree for a directory); absent is fine."""
    try:
        if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
            shutil.rmtree(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _mtime_ns(member: tarfile.TarInfo) -> int:
    return round(member.mtime * _NS) if isinstance(member.mtime, float) else member.mtime * _NS


def read_members(
    stream: MeteredReader,
) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """The members of the streamed tar, each with the tar its data is read from.

    Each member's headers are read within the header limit; data the consumer leaves is passed over
    before the next. Memory stays bounded however many members there are. Raise :class:`LayerError`
    for malformed headers (``tarfile.TarError`` passes)."""
    with contextlib.ExitStack() as stack:
        opening = functools.partial(tarfile.open, fileobj=stream, mode="r|")
        tar = stack.enter_context(_headers(stream, opening))  # reads the first member's
        while (member := _headers(stream, tar.next)) is not None:
            # what tarfile keeps of every member read (not in typeshed); a streamed layer
            # can have millions of entries
            tar.members.clear()  # type: ignore[attr-defined]
            yield member, tar
            _pass_data(member, tar)


def _headers(stream: MeteredReader, read: Callable[[], _T]) -> _T:
    """``read()``, which reads a member's headers, within the header limit."""
    with stream.reading_headers():
        try:
            return read()
        except ValueError as e:  # tarfile's, for some malformed headers
            raise LayerError(f"malformed layer tar: {e}") from None


def _pass_data(member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
    """Read what the applier left of a regular member's data (a whiteout's, say), so
    that reading the next header reads nothing but headers."""
    if not member.isreg():
        return
    stored = sum(length for _, length in data_regions(member))
    rest = member.offset_data + stored - tar.fileobj.tell()
    while rest > 0 and (data := tar.fileobj.read(min(rest, CHUNK))):
        rest -= len(data)


def data_regions(member: tarfile.TarInfo) -> list[tuple[int, int]]:
    """``(offset, length)`` of the data a regular member stores, in the order stored.

    The whole file, or a sparse member's map (everything else is a hole). Raise :class:`LayerError`
    for a map whose regions overlap, go back or pass the end."""
    sparse: list[tuple[int, int]] | None = member.sparse  # type: ignore[assignment]  # not bytes
    if not sparse:
        return [(0, member.size)] if member.size else []
    regions = [(offset, length) for offset, length in sparse if length]
    end = 0
    for offset, length in regions:
        if offset < end or length < 0 or offset + length > member.size:
            raise LayerError(f"layer entry {member.name!r}: invalid sparse map")
        end = offset + length
    return regions


def nonzero_runs(data: bytes, offset: int) -> Iterator[tuple[int, int]]:
    """The ``[start, stop)`` runs of ``data`` to write, skipping aligned blocks of zeros.

    ``data`` goes at file ``offset``; all of it is written but its whole :data:`HOLE_BLOCK`-aligned
    blocks of zeros. One memcmp per block, failing at the first non-zero byte, so ordinary data
    costs next to nothing."""
    size = len(data)
    start = 0  # of the run being gathered
    block = -offset % HOLE_BLOCK  # the first aligned block starts here
    while block + HOLE_BLOCK <= size:
        if data.startswith(_ZEROS, block, block + HOLE_BLOCK):
            if block > start:
                yield start, block
            start = block + HOLE_BLOCK
        block += HOLE_BLOCK
    if start < size:
        yield start, size
