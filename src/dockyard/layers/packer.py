"""Packing a directory into a layer blob in one streaming pass, deterministically.

tar bytes -> sha256 (the diff_id) -> compressor -> sha256 + count (the blob) -> output.

The same tree always gives the same bytes: entries sorted by path bytewise, pax
format, numeric ids only (no user/group names), whole-second mtimes clamped to
``source_date_epoch`` (SOURCE_DATE_EPOCH semantics, as BuildKit applies it), no
atime/ctime. Hardlinks inside the tree stay hardlinks (the first path in sort order
carries the data), ``user.*``/``security.*`` xattrs travel as ``SCHILY.xattr.*`` pax
records, sockets are skipped.

Packing a tree made from an older layer's tree (an incremental COPY: most files the
very inodes of that layer's snapshot) can take those files' tar members from the older
layer's tar instead of reading them (:class:`Previous`): the bytes are those a
plain pack writes, as a member is a function of the inode and its name alone.

With ``overlay=True`` the directory is an overlayfs upper dir and its deletions become
OCI whiteouts: a 0/0 character device becomes ``.wh.<name>``, an opaque directory gets
a ``<dir>/.wh..wh..opq`` entry, and overlay's own xattrs stay out of the tar. With
``whiteout_names=True`` files already named ``.wh.*`` are packed as written (a directory
holding a layer in OCI form); otherwise such names are refused, as they would delete.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from typing import Any

from dockyard.errors import DigestError, LayerError
from dockyard.layers import tarformat, whiteouts
from dockyard.layers.compression import CHUNK, GZIP, Buffer, CompressingWriter
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.mediatypes import layer_media_type
from dockyard.oci.streams import Reader, Writer

_KEPT_XATTR_PREFIXES = ("user.", "security.")
# Labels of the host's SELinux policy, not of the image; the runtime relabels anyway.
_DROPPED_XATTRS = frozenset({"security.selinux"})
_WH = whiteouts.PREFIX.encode()
_OPAQUE = whiteouts.OPAQUE.encode()
_NS = 1_000_000_000
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC

# What an entry of the walk is: a regular file (not stat'ed yet), anything else, or a
# marker standing for an overlay whiteout device or opaque directory.
_FILE, _PLAIN, _WHITEOUT, _OPAQUE_MARKER = 0, 1, 2, 3

_TYPEFLAGS = {
    stat.S_IFDIR: tarformat.DIRTYPE,
    stat.S_IFLNK: tarformat.SYMTYPE,
    stat.S_IFCHR: tarformat.CHRTYPE,
    stat.S_IFBLK: tarformat.BLKTYPE,
    stat.S_IFIFO: tarformat.FIFOTYPE,
}


class StalePrevious(LayerError):
    """The older layer given to :func:`pack` cannot be used: pack the tree without it."""


@dataclass(frozen=True)
class Previous:
    """The layer a tree was made from, for :func:`pack` to take members from.

    ``tar``: its uncompressed tar (read to its end, so that a verifying reader checks
    it); ``diff_id``: what that tar must hash to; ``rewritten``: the names of the
    regular files that are not the very inodes the layer was packed from (whose members
    are made afresh). Every other regular file of the tree must be.
    """

    tar: Reader
    diff_id: str
    rewritten: frozenset[bytes]


@dataclass(frozen=True)
class PackedLayer:
    """What a manifest and a config need to know about a packed layer."""

    digest: str
    """sha256 of the blob as written (compressed)."""
    size: int
    """Bytes written to the output."""
    diff_id: str
    """sha256 of the uncompressed tar: the config's ``rootfs.diff_ids`` entry."""
    media_type: str

    def descriptor(self, **kw: Any) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, **kw)


def pack(
    source: str | os.PathLike[str],
    out: Writer,
    *,
    compression: str | None = GZIP,
    level: int | None = None,
    source_date_epoch: int | None = None,
    overlay: bool = False,
    whiteout_names: bool = False,
    previous: Previous | None = None,
) -> PackedLayer:
    """Write the tree under ``source`` as a layer blob to ``out``, in one pass.

    ``compression`` is ``"gzip"``, ``"zstd"`` or None (plain tar); ``level`` overrides
    its default (isal 1, zstd 3). ``source_date_epoch`` clamps mtimes to that time.
    ``overlay`` reads ``source`` as an overlayfs upper dir, ``whiteout_names`` lets
    ``.wh.*`` files through as whiteouts (see the module docstring).
    The tree must not change while it is packed: a file that shrinks raises
    :class:`LayerError`, as does anything that cannot be read. ``source`` itself is not
    an entry; paths are relative to it. ``previous``: see :class:`Previous`;
    :class:`StalePrevious` if its tar is not what it says (``out`` is then spoilt).
    """
    root = os.fsencode(source)
    try:
        entries = _scan(root, overlay, whiteout_names)
    except OSError as e:
        raise LayerError(f"cannot pack {os.fsdecode(e.filename or root)}: {e.strerror}") from e
    blob = _DigestingSink(out)
    tar = _TarPipe(CompressingWriter(blob, compression, level))
    first_links: dict[tuple[int, int], bytes] = {}
    old = _OldMembers(previous) if previous is not None else None
    for name, path, st, kind in entries:
        try:
            if kind == _FILE:
                if old is None or name in old.rewritten or not old.copy(name, tar):
                    tar.add_file(name, path, source_date_epoch, overlay, first_links)
                continue
            assert st is not None  # only regular files are stat'ed later
            mtime = _clamp(st.st_mtime_ns, source_date_epoch)
            if kind == _PLAIN:
                tar.write(_other_header(name, path, st, mtime, overlay))
            else:
                tar.write(_marker_header(name, st, kind, mtime))
        except ValueError as e:  # a value no tar header can hold
            raise LayerError(f"{os.fsdecode(name)}: {e}") from None
        except OSError as e:
            raise LayerError(f"cannot pack {os.fsdecode(path)}: {e.strerror or e}") from e
    if old is not None:
        old.finish()
    tar.close()
    return PackedLayer(
        digest="sha256:" + blob.hash.hexdigest(),
        size=blob.size,
        diff_id="sha256:" + tar.diff.hexdigest(),
        media_type=layer_media_type(compression),
    )


_Entry = tuple[bytes, bytes, os.stat_result | None, int]


def _scan(root: bytes, overlay: bool, whiteout_names: bool) -> list[_Entry]:
    """Every entry under ``root`` as ``(tar name, disk path, lstat, kind)``, sorted by name.

    The whole tree is listed before anything is written: a bytewise sort of full paths
    interleaves directories (``a``, ``a-b``, ``a/b``), so a depth-first walk cannot give it.
    Regular files, the bulk of a tree, are not stat'ed here (the directory listing says
    what they are): they are opened later and fstat'ed, one path lookup instead of two.
    """
    entries: list[_Entry] = []
    pending: list[tuple[bytes, bytes]] = [(root, b"")]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as listing:
            for found in listing:
                name = prefix + found.name
                if found.name.startswith(_WH) and not whiteout_names:
                    raise LayerError(
                        f"{os.fsdecode(found.path)}: names starting with {whiteouts.PREFIX!r} "
                        "are whiteouts in a layer and cannot be packed as files"
                    )
                if found.is_file(follow_symlinks=False):
                    entries.append((name, found.path, None, _FILE))
                    continue
                st = found.stat(follow_symlinks=False)
                fmt = stat.S_IFMT(st.st_mode)
                if overlay and fmt == stat.S_IFCHR and st.st_rdev == 0:
                    entries.append((prefix + _WH + found.name, found.path, st, _WHITEOUT))
                elif fmt != stat.S_IFSOCK:
                    entries.append((name, found.path, st, _PLAIN))
                if fmt == stat.S_IFDIR:
                    pending.append((found.path, name + b"/"))
                    if overlay and _is_opaque(found.path):
                        entries.append((name + b"/" + _OPAQUE, found.path, st, _OPAQUE_MARKER))
    entries.sort(key=lambda entry: entry[0])
    return entries


def _is_opaque(path: bytes) -> bool:
    """Did overlayfs mark this upper directory opaque (lower content hidden)?"""
    for attr in whiteouts.OVERLAY_OPAQUE_XATTRS:
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError:  # absent, or trusted.* unreadable without CAP_SYS_ADMIN
            pass
    return False


def _xattrs(target: bytes | int, name: bytes, overlay: bool) -> dict[str, bytes] | None:
    """The xattrs that belong in a layer of the path or open fd ``target``, or None."""
    follow = isinstance(target, int)  # an fd is the file itself; a path is never followed
    try:
        attrs = os.listxattr(target, follow_symlinks=follow)
    except OSError:  # a filesystem without xattr support
        return None
    if not attrs:
        return None
    kept: dict[str, bytes] = {}
    for attr in attrs:
        if overlay and attr in whiteouts.OVERLAY_UNSUPPORTED_XATTRS:
            raise LayerError(
                f"{os.fsdecode(name)}: has {attr}; mount the overlay with "
                "redirect_dir=off,metacopy=off to produce a packable upper dir"
            )
        if (
            attr.startswith(_KEPT_XATTR_PREFIXES)
            and attr not in _DROPPED_XATTRS
            and not whiteouts.is_overlay_xattr(attr)
        ):
            kept[attr] = os.getxattr(target, attr, follow_symlinks=follow)
    return kept or None


def _ids_header(
    name: bytes, typeflag: bytes, st: os.stat_result, mtime: int, **fields: Any
) -> bytes:
    """A header whose mode and numeric owner come from ``st``."""
    mode = stat.S_IMODE(st.st_mode)
    return tarformat.header(
        name, typeflag, mode=mode, uid=st.st_uid, gid=st.st_gid, mtime=mtime, **fields
    )


def _other_header(name: bytes, path: bytes, st: os.stat_result, mtime: int, overlay: bool) -> bytes:
    """The header of anything but a regular file: a directory, symlink, device or fifo."""
    fmt = stat.S_IFMT(st.st_mode)
    link = os.readlink(path) if fmt == stat.S_IFLNK else b""
    dev = st.st_rdev if fmt in (stat.S_IFCHR, stat.S_IFBLK) else 0
    return _ids_header(
        name + b"/" if fmt == stat.S_IFDIR else name,
        _TYPEFLAGS[fmt],
        st,
        mtime,
        linkname=link,
        devmajor=os.major(dev),
        devminor=os.minor(dev),
        xattrs=_xattrs(path, name, overlay),
    )


def _marker_header(name: bytes, st: os.stat_result, kind: int, mtime: int) -> bytes:
    """A whiteout or opaque marker: an empty regular file owned like what it marks, mode
    0600 for whiteouts and the directory's permissions for opaque markers (as Docker)."""
    mode = 0o600 if kind == _WHITEOUT else stat.S_IMODE(st.st_mode) & 0o777
    return tarformat.header(
        name, tarformat.REGTYPE, mode=mode, uid=st.st_uid, gid=st.st_gid, mtime=mtime
    )


class _DigestingSink:
    """The end of the pipe: counts and hashes the blob bytes on their way to ``out``."""

    def __init__(self, out: Writer):
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: Buffer) -> int:
        self.hash.update(data)
        self.size += len(data)
        self._out.write(data)
        return len(data)


class _TarPipe:
    """The head of the pipe: tar bytes are hashed (diff_id) and compressed in 1 MiB
    batches, so a small file costs one buffer append rather than a compressor call."""

    def __init__(self, writer: CompressingWriter):
        self.diff = hashlib.sha256()
        self._writer = writer
        self._pending = bytearray()
        self._chunk = memoryview(bytearray(CHUNK))

    def write(self, data: Buffer) -> None:
        self._pending += data
        if len(self._pending) >= CHUNK:
            self._flush()

    def add_file(
        self,
        name: bytes,
        path: bytes,
        source_date_epoch: int | None,
        overlay: bool,
        first_links: dict[tuple[int, int], bytes],
    ) -> None:
        """A regular file: its header, data and padding; or a hardlink to the first name
        of its inode (recorded in ``first_links``), which carried data and xattrs."""
        fd = os.open(path, _READ_FLAGS)
        try:
            st = os.fstat(fd)
            mtime = _clamp(st.st_mtime_ns, source_date_epoch)
            if st.st_nlink > 1:
                first = first_links.setdefault((st.st_dev, st.st_ino), name)
                if first != name:
                    self.write(_ids_header(name, tarformat.LNKTYPE, st, mtime, linkname=first))
                    return
            size = st.st_size
            mode = stat.S_IMODE(st.st_mode)
            xattrs = _xattrs(fd, name, overlay)
            if xattrs:
                header = tarformat.header(
                    name,
                    tarformat.REGTYPE,
                    mode=mode,
                    uid=st.st_uid,
                    gid=st.st_gid,
                    mtime=mtime,
                    size=size,
                    xattrs=xattrs,
                )
            else:
                header = tarformat.file_header(name, mode, st.st_uid, st.st_gid, size, mtime)
            if size <= CHUNK:  # the common case, kept to one buffer append
                data = os.read(fd, size)
                while len(data) < size and (more := os.read(fd, size - len(data))):
                    data += more
                if len(data) < size:
                    raise _shrunk(name)
                self.write(b"%s%s%s" % (header, data, tarformat.padding(size)))
                return
            self.write(header)
            self._flush()
            remaining = size
            while remaining:
                got = os.readv(fd, [self._chunk[: min(remaining, CHUNK)]])
                if not got:
                    raise _shrunk(name)
                self._send(self._chunk[:got])
                remaining -= got
            self.write(tarformat.padding(size))
        finally:
            os.close(fd)

    def close(self) -> None:
        self.write(tarformat.END_OF_ARCHIVE)
        self._flush()
        self._writer.close()

    def _flush(self) -> None:
        if self._pending:
            self._send(self._pending)
            self._pending.clear()

    def _send(self, data: Buffer) -> None:
        self.diff.update(data)
        self._writer.write(data)


class _OldMembers:
    """The members of an older layer's tar, read in order as :func:`pack` asks for them."""

    def __init__(self, previous: Previous):
        self.rewritten = previous.rewritten
        self._tar = previous.tar
        self._diff_id = previous.diff_id
        self._hash = hashlib.sha256()
        self._buffer = b""  # read ahead, in big reads: a read per header would cost more
        self._at = 0
        self._head: tuple[bytes, bytes, bytes, int] | None = None  # name, type, header, data
        self._ended = False
        self._peek()

    def copy(self, name: bytes, tar: _TarPipe) -> bool:
        """Write the member of the regular file ``name`` to ``tar``; False if there is none."""
        while self._head is not None and self._head[0] < name:
            self._skip(self._head[3])
            self._peek()
        if self._head is None or self._head[0] != name:
            return False
        _, typeflag, header, length = self._head
        if typeflag != tarformat.REGTYPE:
            raise StalePrevious(f"{os.fsdecode(name)} is no regular file in the older layer")
        if length <= CHUNK:
            tar.write(header + self._exact(length))
        else:
            tar.write(header)
            tar._flush()
            while length:
                chunk = self._exact(min(length, CHUNK))
                tar._send(chunk)
                length -= len(chunk)
        self._peek()
        return True

    def finish(self) -> None:
        """Read the older tar to its end and check it is the layer it was said to be."""
        while self._read():
            pass
        if "sha256:" + self._hash.hexdigest() != self._diff_id:
            raise StalePrevious("the older layer is not the one its tree was made from")

    def _read(self) -> bytes:
        try:
            data = self._tar.read(CHUNK)
        except (LayerError, DigestError, OSError) as e:
            raise StalePrevious(f"the older layer cannot be read: {e}") from e
        self._hash.update(data)
        return data

    def _exact(self, n: int) -> bytes:
        end = self._at + n
        if end > len(self._buffer):
            parts = [self._buffer[self._at :]]
            have = len(parts[0])
            while have < n:
                if not (more := self._read()):
                    raise StalePrevious("the older layer's tar ends early")
                parts.append(more)
                have += len(more)
            self._buffer, self._at, end = b"".join(parts), 0, n
        data = self._buffer[self._at : end]
        self._at = end
        return data

    def _skip(self, n: int) -> None:
        while n:
            n -= len(self._exact(min(n, CHUNK)))

    def _peek(self) -> None:
        """Parse the next member's header(s), leaving its data unread."""
        self._head = None
        if self._ended:
            return
        at = self._at
        if at + _BLOCK <= len(self._buffer):  # the common case, without a call
            header = block = self._buffer[at : at + _BLOCK]
            self._at = at + _BLOCK
        else:
            header = block = self._exact(_BLOCK)
        if block == _ZERO_BLOCK:
            self._ended = True  # the end-of-archive blocks: finish() reads them
            return
        typeflag = block[156:157]
        path = size = None
        if typeflag == b"x":
            length = _octal(block[124:136])
            data = self._exact(length + -length % _BLOCK)
            fields = _pax_records(data[:length])
            path = fields.get(b"path")
            size = int(fields[b"size"]) if b"size" in fields else None
            block = self._exact(_BLOCK)
            header += data + block
            typeflag = block[156:157]
        if typeflag not in _PLAIN_TYPES:
            raise StalePrevious(f"the older layer has a member of type {typeflag!r}")
        name = path or block[:100].split(b"\0", 1)[0]
        if size is None:
            size = _octal(block[124:136])
        if size and typeflag != tarformat.REGTYPE:
            raise StalePrevious(f"the older layer's {os.fsdecode(name)} has data")
        self._head = (name.rstrip(b"/"), typeflag, header, size + -size % _BLOCK)


_BLOCK = tarformat.BLOCK
_ZERO_BLOCK = bytes(tarformat.BLOCK)
# What a tar of this packer holds: no hardlinks (a tree made from an older layer's may
# break them), GNU long names or global pax headers.
_PLAIN_TYPES = frozenset(
    {
        tarformat.REGTYPE,
        tarformat.SYMTYPE,
        tarformat.CHRTYPE,
        tarformat.BLKTYPE,
        tarformat.DIRTYPE,
        tarformat.FIFOTYPE,
    }
)


def _octal(field: bytes) -> int:
    try:
        return int(field[:-1], 8)  # as this packer writes them: digits, then a NUL
    except ValueError:
        pass
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise StalePrevious(f"bad number {field!r} in the older layer") from None


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    fields = {}
    while data:
        length, _, rest = data.partition(b" ")
        try:
            size = int(length)
        except ValueError:
            raise StalePrevious("bad pax record in the older layer") from None
        key, _, value = rest[: size - len(length) - 2].partition(b"=")
        fields[key] = value
        data = data[size:]
    return fields


def _clamp(mtime_ns: int, source_date_epoch: int | None) -> int:
    """Whole seconds, no later than ``source_date_epoch``."""
    mtime = mtime_ns // _NS
    return mtime if source_date_epoch is None else min(mtime, source_date_epoch)


def _shrunk(name: bytes) -> LayerError:
    return LayerError(f"{os.fsdecode(name)}: file shrank while it was packed")
