"""The body side of blob uploads: re-openable sources and verified chunking."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from dockyard.errors import DigestError
from dockyard.oci import digest as digests
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.home import BlobOpener

Opener = BlobOpener
"""Opens the blob's bytes from the start; called once per upload attempt."""


class StreamNotReopenable(Exception):
    """Raised by an :data:`Opener` that cannot give the bytes again: the upload then fails
    with the error that asked for the retry."""


def read_full(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at EOF."""
    parts = []
    while size > 0 and (data := stream.read(size)):
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def verified_chunks(stream: BinaryIO, desc: Descriptor, chunk_size: int) -> Iterator[bytes]:
    """The stream in ``chunk_size`` pieces (the last may be shorter).

    Size and digest are checked before the last piece is yielded, so a registry never
    receives the whole of a wrong body: :class:`DigestError` aborts the upload first.
    """
    hasher = digests.hasher(desc.digest)
    size = 0
    held = b""
    while data := read_full(stream, chunk_size):
        hasher.update(data)
        size += len(data)
        if size > desc.size:
            raise DigestError(f"blob {desc.digest}: more than the expected {desc.size} bytes")
        if held:
            yield held
        held = data
    if size != desc.size:
        raise DigestError(f"blob {desc.digest}: size {size} does not match expected {desc.size}")
    actual = f"{hasher.name}:{hasher.hexdigest()}"
    if actual != desc.digest:
        raise DigestError(f"blob {desc.digest}: content has digest {actual}")
    if held:
        yield held
