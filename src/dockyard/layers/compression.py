"""Layer compression, streaming both ways: gzip through isal, zstd through zstandard.

isal rather than zlib because zlib manages ~30 MB/s on incompressible data (binaries,
already-compressed files), the common content of layers; isal is 10-20x faster. Both
libraries are imported inside the functions that need them: most CLI commands never
compress, and start-up time matters.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from dockyard.errors import DockyardError, LayerError
from dockyard.oci.streams import ReadCloser, Reader, Writer

GZIP = "gzip"
ZSTD = "zstd"
COMPRESSIONS = (None, GZIP, ZSTD)
DEFAULT_LEVELS = {GZIP: 1, ZSTD: 3}
CHUNK = 1 << 20

Buffer = bytes | bytearray | memoryview

_MAGICS = {
    b"\x1f\x8b": GZIP,
    b"\x28\xb5\x2f\xfd": ZSTD,
    b"\xfd7zXZ\x00": "xz",
    b"BZh": "bzip2",
}
_HEAD = max(len(m) for m in _MAGICS)


class CompressingWriter:
    """A write-only stream that compresses what it is given into ``sink``.

    ``close()`` ends the compressed stream but leaves ``sink`` open. The output depends
    only on the input bytes (no timestamps or names in the gzip header), so packing the
    same tar twice gives the same blob. ``compression=None`` passes bytes through.
    """

    def __init__(self, sink: Writer, compression: str | None, level: int | None = None):
        self._sink = sink
        self._compress, self._flush = _compressor(compression, level)
        self.closed = False

    def write(self, data: Buffer) -> int:
        out = self._compress(data)
        if out:
            self._sink.write(out)
        return len(data)

    def close(self) -> None:
        """Write the end of the compressed stream (once)."""
        if not self.closed:
            self.closed = True
            out = self._flush()
            if out:
                self._sink.write(out)

    def __enter__(self) -> CompressingWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # a half-written stream is garbage either way: do not add a trailer
            self.closed = True


def _compressor(
    compression: str | None, level: int | None
) -> tuple[Callable[[Buffer], Buffer], Callable[[], bytes]]:
    """``(compress, flush)`` functions of a fresh compression stream."""
    if compression is None:
        return (lambda data: data), bytes
    if level is None:
        level = DEFAULT_LEVELS.get(compression, 0)
    if compression == GZIP:
        from isal import isal_zlib

        # wbits 16+15: a gzip wrapper whose header has mtime 0 and no file name.
        gz = isal_zlib.compressobj(level, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
        return gz.compress, gz.flush
    if compression == ZSTD:
        import zstandard

        zs = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()
        return zs.compress, zs.flush
    raise ValueError(f"unknown compression {compression!r}: expected gzip, zstd or None")


def detect(head: bytes) -> str | None:
    """The compression of a stream that starts with ``head``: ``gzip``, ``zstd`` or None.

    Raise :class:`LayerError` for formats layers do not use (xz, bzip2).
    """
    for magic, kind in _MAGICS.items():
        if head.startswith(magic):
            if kind not in COMPRESSIONS:
                raise LayerError(f"layer is {kind}-compressed: only gzip and zstd are supported")
            return kind
    return None


def open_decompressed(stream: Reader) -> io.RawIOBase:
    """A reader of the tar in ``stream``, found by magic bytes rather than media type.

    Media types lie (docker-archive layers are often gzip in a ``.tar``), so gzip, zstd
    and plain tar are told apart by their first bytes. Reading is streaming and bounded
    in memory. Corrupt or truncated compressed data raises :class:`LayerError`. Closing
    the reader leaves ``stream`` open.
    """
    head = b""
    while len(head) < _HEAD and (more := stream.read(_HEAD - len(head))):
        head += more
    source = _Prefixed(head, stream)
    kind = detect(head)
    if kind == GZIP:
        from isal import igzip, isal_zlib

        # isal's stubs declare ``error`` an instance; it is the class IsalError
        errors = (EOFError, OSError, isal_zlib.error)
        return _Checked(igzip.IGzipFile(fileobj=source, mode="rb"), kind, errors)  # type: ignore[arg-type]
    if kind == ZSTD:
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(
            _FrameChecked(source),  # type: ignore[arg-type]  # its stubs say IO; it calls read
            read_size=CHUNK,
            read_across_frames=True,
            closefd=False,
        )
        return _Checked(reader, kind, (zstandard.ZstdError,))
    return source


class _Prefixed(io.RawIOBase):
    """``stream`` with the bytes already read from it put back in front."""

    def __init__(self, head: bytes, stream: Reader):
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        head = self._head
        if size is None or size < 0:
            self._head = b""
            return head + self._stream.read()
        if size <= len(head):
            self._head = head[size:]
            return head[:size]
        self._head = b""
        return head + self._stream.read(size - len(head))

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Checked(io.RawIOBase):
    """A decompressing reader whose format errors become :class:`LayerError`."""

    def __init__(self, reader: ReadCloser, kind: str, errors: tuple[type[BaseException], ...]):
        self._reader = reader
        self._kind = kind
        self._errors = errors

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._reader.read(-1 if size is None else size)
        except DockyardError:
            raise  # e.g. the source's own digest check: already says what is wrong
        except self._errors as e:
            raise LayerError(f"corrupt {self._kind} layer data: {e}") from e

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._reader.close()
        super().close()


class _FrameChecked(io.RawIOBase):
    """A zstd source that raises :class:`LayerError` if it ends inside a frame.

    python-zstandard's readers return short output, silently, for truncated input.
    This follows the frame structure (RFC 8878: frame header, 3-byte block headers,
    optional checksum, skippable frames) as the compressed bytes pass, which costs a
    few operations per 128 KiB block, so that the end of the source can be judged.
    """

    _ZSTD_MAGIC = 0xFD2FB528
    _SKIPPABLE_MAGIC = 0x184D2A50  # the low 4 bits are free

    def __init__(self, source: Reader):
        self._source = source
        self._field = b""  # the bytes so far of the field being read
        self._want = 4  # the length of that field
        self._state = "magic"
        self._skip = 0  # bytes of content to pass before the next field
        self._checksum = False
        self._lost = False  # not zstd after all: leave the error to the decompressor

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._source.read(-1 if size is None else size)
        if data:
            self._follow(data)
        elif not self._lost and (self._state != "magic" or self._skip or self._field):
            raise LayerError("zstd layer data is truncated: it ends inside a frame")
        return data

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _follow(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end and not self._lost:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._want - len(self._field), end - pos)
            self._field += data[pos : pos + take]
            pos += take
            if len(self._field) == self._want:
                field, self._field = self._field, b""
                self._parse(int.from_bytes(field, "little"))

    def _parse(self, value: int) -> None:
        """Act on a complete field: set what comes next and how much content to skip."""
        if self._state == "magic":
            if value == self._ZSTD_MAGIC:
                self._next("descriptor", 1)
            elif value & ~0xF == self._SKIPPABLE_MAGIC:
                self._next("skippable size", 4)
            else:
                self._lost = True
        elif self._state == "skippable size":
            self._skip = value
            self._next("magic", 4)
        elif self._state == "descriptor":
            single_segment = value >> 5 & 1
            self._checksum = bool(value & 4)
            window = 0 if single_segment else 1
            dictionary = (0, 1, 2, 4)[value & 3]
            content_size = (single_segment, 2, 4, 8)[value >> 6]
            self._skip = window + dictionary + content_size
            self._next("block", 3)
        else:  # a block header: last-block bit, type, size
            kind, size = value >> 1 & 3, value >> 3
            if kind == 3:  # reserved: corrupt, the decompressor will say so
                self._lost = True
            self._skip = 1 if kind == 1 else size  # an RLE block holds one byte
            if value & 1:
                self._skip += 4 if self._checksum else 0
                self._next("magic", 4)
            else:
                self._next("block", 3)

    def _next(self, state: str, length: int) -> None:
        self._state = state
        self._want = length
