"""Streaming gzip/zstd compression and magic-byte detection for layer blobs."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys

import pytest

from dockyard.errors import DigestError, LayerError
from dockyard.layers.compression import CompressingWriter, detect, open_decompressed
from dockyard.oci.digest import VerifyingReader, of_bytes

# Half text, half incompressible: both code paths of the compressors.
DATA = b"".join(b"line %d of some text\n" % i for i in range(150_000)) + os.urandom(3 << 20)


def compress(data: bytes, compression: str | None, level: int | None = None) -> bytes:
    sink = io.BytesIO()
    with CompressingWriter(sink, compression, level) as writer:
        for start in range(0, len(data), 300_000):  # several writes, odd sizes
            writer.write(data[start : start + 300_000])
    return sink.getvalue()


def read_all(reader: io.RawIOBase, size: int = 65536) -> bytes:
    parts = []
    while chunk := reader.read(size):
        assert len(chunk) <= size
        parts.append(chunk)
    return b"".join(parts)


class CountingReader(io.RawIOBase):
    """A source that records how much of it was consumed."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._data.read(size)
        self.consumed += len(chunk)
        return chunk


@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_round_trip(compression):
    blob = compress(DATA, compression)
    assert detect(blob[:8]) == compression
    if compression:
        assert len(blob) < len(DATA)
    assert read_all(open_decompressed(io.BytesIO(blob))) == DATA


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_output_depends_only_on_input(compression):
    assert compress(DATA, compression) == compress(DATA, compression)


def test_gzip_header_has_no_time_or_name():
    blob = compress(b"x" * 1000, "gzip")
    assert blob[:3] == b"\x1f\x8b\x08"
    assert blob[3] & 0x08 == 0  # FNAME flag clear
    assert blob[4:8] == b"\0\0\0\0"  # MTIME 0
    assert gzip.decompress(blob) == b"x" * 1000  # a standard gzip stream


def test_levels_change_the_output():
    text = DATA[:50_000]  # enough for the levels to differ (zstd 19 on all of DATA: 11 s)
    for compression, low, high in (("zstd", 1, 19), ("gzip", 0, 3)):
        fast, small = compress(text, compression, low), compress(text, compression, high)
        assert len(small) < len(fast)
        assert read_all(open_decompressed(io.BytesIO(small))) == text
        assert read_all(open_decompressed(io.BytesIO(fast))) == text


def test_unknown_compression_is_refused():
    with pytest.raises(ValueError, match="brotli"):
        CompressingWriter(io.BytesIO(), "brotli")


def test_close_ends_the_stream_once_and_leaves_the_sink_open():
    sink = io.BytesIO()
    writer = CompressingWriter(sink, "gzip")
    writer.write(b"abc")
    writer.close()
    size = len(sink.getvalue())
    writer.close()
    assert len(sink.getvalue()) == size
    assert not sink.closed
    assert gzip.decompress(sink.getvalue()) == b"abc"


def test_no_trailer_after_an_exception():
    sink = io.BytesIO()
    with pytest.raises(RuntimeError), CompressingWriter(sink, "zstd") as writer:
        writer.write(b"abc" * 1000)
        raise RuntimeError("boom")
    assert writer.closed
    finished = compress(b"abc" * 1000, "zstd")
    assert len(sink.getvalue()) < len(finished)


def test_detection_ignores_what_the_media_type_says():
    """A docker-archive "tar" layer that is really gzip, a "+gzip" one that is zstd."""
    for compression in ("gzip", "zstd", None):
        blob = compress(b"payload", compression)
        assert read_all(open_decompressed(io.BytesIO(blob))) == b"payload"


def test_concatenated_members_and_frames_are_all_read():
    for compression in ("gzip", "zstd"):
        blob = compress(b"first ", compression) + compress(b"second", compression)
        assert read_all(open_decompressed(io.BytesIO(blob))) == b"first second"


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_decompression_streams(compression):
    """Reading the first MiB must not consume the whole source (bounded memory)."""
    data = os.urandom(24 << 20)
    source = CountingReader(compress(data, compression))
    total = len(source._data.getvalue())
    reader = open_decompressed(source)
    assert reader.read(1 << 20) == data[: 1 << 20]
    assert source.consumed < total // 4
    assert read_all(reader) == data[1 << 20 :]


def test_short_reads_from_the_source_are_fine():
    class Trickle(CountingReader):
        def read(self, size: int = -1) -> bytes:
            return super().read(min(size, 3) if size and size > 0 else 3)

    blob = compress(DATA[:100_000], "zstd")
    assert read_all(open_decompressed(Trickle(blob))) == DATA[:100_000]


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_truncated_data_is_a_layer_error(compression):
    blob = compress(DATA, compression)
    with pytest.raises(LayerError, match=compression):
        read_all(open_decompressed(io.BytesIO(blob[: len(blob) // 2])))


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_every_cut_inside_a_stream_is_detected(compression):
    """Truncation anywhere but between two members/frames is an error, never short data."""
    first = compress(b"a" * 5000, compression)
    blob = first + compress(os.urandom(3000), compression)
    for cut in range(4, len(blob)):  # shorter than a magic number, it is not compressed
        stream = open_decompressed(io.BytesIO(blob[:cut]))
        if cut == len(first):
            assert read_all(stream) == b"a" * 5000
        else:
            with pytest.raises(LayerError, match=r"truncated|ended|corrupt"):
                read_all(stream)


@pytest.mark.parametrize(
    "flags",
    [["-3"], ["-19", "--long=27"], ["-T2", "-1", "--no-check"], ["--content-size", "-5"]],
)
def test_zstd_streams_from_the_zstd_tool(tmp_path, flags):
    if shutil.which("zstd") is None:
        pytest.skip("needs the zstd tool")
    data = DATA[: 1 << 20] * 5
    blob = subprocess.run(
        ["zstd", "-q", "-c", *flags], input=data, capture_output=True, check=True
    ).stdout
    skippable = b"\x5a\x2a\x4d\x18" + (3).to_bytes(4, "little") + b"xyz"
    assert read_all(open_decompressed(io.BytesIO(blob + skippable + blob))) == data * 2


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_corrupt_data_is_a_layer_error(compression):
    blob = bytearray(compress(DATA, compression))
    blob[len(blob) // 3 : len(blob) // 3 + 64] = bytes(64)
    with pytest.raises(LayerError, match=compression):
        read_all(open_decompressed(io.BytesIO(bytes(blob))))


def test_digest_errors_of_the_source_pass_through_unchanged():
    blob = compress(DATA, "gzip")
    wrong = of_bytes(b"something else")
    with pytest.raises(DigestError):
        read_all(open_decompressed(VerifyingReader(io.BytesIO(blob), wrong, len(blob))))


@pytest.mark.parametrize("head", [b"\xfd7zXZ\x00rest", b"BZh91AY&SY"])
def test_unsupported_compressions_are_named(head):
    with pytest.raises(LayerError, match=r"xz|bzip2"):
        open_decompressed(io.BytesIO(head))


def test_closing_the_reader_leaves_the_source_open():
    for compression in ("gzip", "zstd", None):
        source = io.BytesIO(compress(b"data", compression))
        reader = open_decompressed(source)
        read_all(reader)
        reader.close()
        assert not source.closed


def test_compression_libraries_are_imported_lazily():
    code = (
        "import sys, dockyard.layers; "
        "assert not {'isal', 'zstandard'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
