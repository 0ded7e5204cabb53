"""The stream types blobs move as: what moving a blob needs, and no more.

``BinaryIO`` promises some thirty methods (``seek``, ``fileno``, ``truncate``...) that
an HTTP body, a decompressor or a verifying wrapper do not have. Homes hand out and
take a :class:`ReadCloser` (``read``, and ``close`` for whoever wraps it); helpers
that only read take a :class:`Reader`; layers are packed into a :class:`Writer`.
Files, ``BytesIO`` and every ``BinaryIO`` are all three.
"""

from __future__ import annotations

from typing import Protocol


class Reader(Protocol):
    """Anything with ``read``.

    ``read`` gives up to ``size`` bytes (all the rest if negative or left out), ``b""``
    at EOF.
    """

    def read(self, size: int = -1, /) -> bytes: ...


class ReadCloser(Reader, Protocol):
    """A :class:`Reader` its user closes when done."""

    def close(self) -> None: ...


class Writer(Protocol):
    """Anything with a ``write`` that takes all of ``data``.

    Files, sockets made files, hashing sinks; the count ``write`` returns is not relied
    on.
    """

    def write(self, data: bytes | bytearray | memoryview, /) -> object: ...
