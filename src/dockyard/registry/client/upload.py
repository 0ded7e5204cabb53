"""The body side of blob uploads: re-openable sources and verified chunking."""

from __future__ import annotations

from collections.abc import Iterator

from dockyard.oci import digest as digests
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.home import BlobOpener
from dockyard.oci.streams import ReadCloser, Reader

Opener = BlobOpener
"""Opens the blob's bytes from the start; called once per upload attempt."""


class StreamNotReopenable(Exception):
    """Raised by an :data:`Opener` that cannot give the bytes again.

    The upload then fails with the error that asked for the retry."""


def read_full(stream: Reader, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at EOF."""
    parts = []
    while size > 0 and (data := stream.read(size)):
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def verified_chunks(stream: ReadCloser, desc: Descriptor, chunk_size: int) -> Iterator[bytes]:
    """The stream in ``chunk_size`` pieces (the last may be shorter).

    Size and digest are checked before the last piece is yielded, so a registry never
    receives the whole of a wrong body: :class:`DigestError` aborts the upload first.
    """
    reader = digests.verified(stream, desc.digest, desc.size)
    held = b""
    while data := read_full(reader, chunk_size):  # the read at EOF verifies
        if held:
            yield held
        held = data
    if held:
        yield held
