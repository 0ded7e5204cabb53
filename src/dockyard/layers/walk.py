"""Reading a layer's entries as a stream: no extraction, bounded memory.

:func:`walk_layer` reads one layer blob (gzip, zstd or plain tar) from any stream --
the store's blob file or a registry's response body -- and hands each entry to the
caller as an :class:`Entry`: its path, kind, mode, owner and size, and, only if asked,
the first bytes of its data (:meth:`Entry.head`). Nothing is written anywhere, and the
layer is metered like an extracted one (:mod:`.limits`), so a decompression bomb stops
at the limit. The stream is read to its end, so a digest-verifying stream verifies.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dockyard.layers import whiteouts
from dockyard.layers.compression import CHUNK, open_decompressed
from dockyard.layers.extract import data_regions, layer_errors, metered_members
from dockyard.layers.limits import Limits, Meter
from dockyard.oci.streams import Reader

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
HARDLINK = "hardlink"
DEVICE = "device"
FIFO = "fifo"
WHITEOUT = "whiteout"  # path: what it deletes from the layers below
OPAQUE = "opaque"  # path: the directory whose lower content it hides


@dataclass
class Entry:
    """One entry of a layer tar, its path absolute and normalised (``/etc/passwd``)."""

    path: str
    kind: str
    mode: int  # permission bits, setuid/setgid/sticky included
    uid: int
    gid: int
    size: int  # of a regular file's content (the apparent size of a sparse file)
    linkname: str = ""
    _reader: Callable[[], Reader | None] | None = field(default=None, repr=False)
    _head: bytes = field(default=b"", repr=False)
    _stream: Reader | None = field(default=None, repr=False)

    def head(self, limit: int) -> bytes:
        """The first ``limit`` bytes of a regular file's content; b"" for anything else.

        Less if it is shorter. Reads only as far as asked: call it from the visitor, while the walk
        is at this entry."""
        if self.kind != FILE or limit <= len(self._head) or len(self._head) >= self.size:
            return self._head[:limit]
        if self._stream is None:
            if self._reader is None:
                return self._head[:limit]
            self._stream = self._reader()
            if self._stream is None:
                return b""
        want = min(limit, self.size) - len(self._head)
        chunks = [self._head]
        while want > 0 and (data := self._stream.read(min(want, CHUNK))):
            chunks.append(data)
            want -= len(data)
        self._head = b"".join(chunks)
        return self._head[:limit]

    def content_digest(self) -> str:
        """``sha256:...`` of a regular file's whole content; of b"" for anything else.

        Read in chunks (bounded memory, whatever the size). Call it once, after any :meth:`head`: it
        reads the rest of the content."""
        hasher = hashlib.sha256(self._head)
        if self.kind == FILE and len(self._head) < self.size:
            stream = self._stream or (self._reader() if self._reader else None)
            while stream is not None and (data := stream.read(CHUNK)):
                hasher.update(data)
        return f"sha256:{hasher.hexdigest()}"


Visitor = Callable[[Entry], None]


@dataclass(frozen=True)
class LayerReading:
    """What reading a layer measured: its tar's size and how many entries it holds."""

    tar_size: int
    entries: int
    diff_id: str | None = None  # "sha256:..." of the tar, if asked for


def walk_layer(
    blob: Reader, visit: Visitor, *, name: str | None = None, diff_id: bool = False
) -> LayerReading:
    """Call ``visit`` for every entry of the layer ``blob`` (compressed or not), in tar order.

    With ``diff_id``, hash the tar too. Raise :class:`LayerError` (starting with ``name`` if given)
    for a malformed or oversized layer."""
    hasher = hashlib.sha256() if diff_id else None
    count = 0
    with layer_errors(name):
        meter = Meter(Limits.from_env())
        tar_stream: io.RawIOBase = open_decompressed(blob)
        if hasher is not None:
            tar_stream = _Hashing(tar_stream, hasher)
        for member, tar in metered_members(tar_stream, meter):
            if member.isreg():  # a sparse file's holes count, as extraction counts them
                meter.expand(member.size - sum(n for _, n in data_regions(member)))
            entry = _entry(member, tar)
            if entry is not None:
                count += 1
                visit(entry)
    digest = f"sha256:{hasher.hexdigest()}" if hasher is not None else None
    return LayerReading(meter.expanded, count, digest)


class _Hashing(io.RawIOBase):
    """``stream``, hashing what is read from it."""

    def __init__(self, stream: Reader, hasher: Any):
        self._stream = stream
        self._hasher = hasher

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._stream.read(-1 if size is None else size)
        self._hasher.update(data)
        return data

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _absolute(name: str) -> str:
    """A member or hardlink target name as an absolute path; ".." cannot climb above "/"."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return posixpath.normpath("/" + "/".join(parts))


def _entry(member: tarfile.TarInfo, tar: tarfile.TarFile) -> Entry | None:
    path = _absolute(member.name)
    parts = path.split("/")
    directory, base = posixpath.split(path)
    if base == whiteouts.OPAQUE:
        return Entry(directory, OPAQUE, 0, 0, 0, 0)
    if any(part.startswith(whiteouts.META_PREFIX) for part in parts):
        return None  # AUFS bookkeeping, not content
    if base.startswith(whiteouts.PREFIX):
        deleted = posixpath.join(directory, base[len(whiteouts.PREFIX) :])
        return Entry(deleted, WHITEOUT, 0, 0, 0, 0)
    kind = _kind(member)
    if kind is None:
        return None
    linkname = member.linkname
    if kind == HARDLINK:
        linkname = _absolute(linkname)
    return Entry(
        path,
        kind,
        member.mode & 0o7777,
        member.uid,
        member.gid,
        member.size if kind == FILE else 0,
        linkname,
        _reader=(lambda: tar.extractfile(member)) if kind == FILE and member.size else None,
    )


def _kind(member: tarfile.TarInfo) -> str | None:
    if member.isreg():
        return FILE
    if member.isdir():
        return DIR
    if member.issym():
        return SYMLINK
    if member.islnk():
        return HARDLINK
    if member.ischr() or member.isblk():
        return DEVICE
    if member.isfifo():
        return FIFO
    return None
