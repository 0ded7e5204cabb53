"""Content digests: validation, hashing, and streams that verify as they are read."""

from __future__ import annotations

import hashlib
import re

from dockyard.errors import DigestError
from dockyard.oci.streams import ReadCloser

_DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
CHUNK = 1 << 20


def validate(digest: str) -> str:
    """Return ``digest`` if it is a well-formed sha256/sha512 digest, else raise."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise DigestError(f"invalid digest {digest!r}")
    return digest


def hasher(digest: str):
    """A fresh hashlib object for the algorithm ``digest`` uses."""
    return hashlib.new(validate(digest).split(":", 1)[0])


def hex_part(digest: str) -> str:
    return validate(digest).split(":", 1)[1]


def of_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def of_file(path: str) -> tuple[str, int]:
    """sha256 digest and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def verified(stream: ReadCloser, digest: str, size: int | None = None) -> ReadCloser:
    """``stream``, made to raise :class:`DigestError` at EOF unless it matches ``digest``.

    A stream that already verifies that digest (its ``verifies`` attribute names it) is
    returned as it is: hashing a blob twice on its way through costs CPU and buys nothing.
    """
    if getattr(stream, "verifies", None) == digest:
        return stream
    return VerifyingReader(stream, digest, size)


class VerifyingReader:
    """Wrap a stream of a blob; raise :class:`DigestError` at EOF if digest or size differ.

    Reading the whole stream is the verification: a consumer that stops early has not
    verified anything, so writers must read to EOF before they commit the content.
    ``verifies`` names the digest checked, for :func:`verified`.
    """

    def __init__(self, stream: ReadCloser, digest: str, size: int | None = None):
        self._stream = stream
        self.digest = digest
        self.verifies = digest
        self.size = size
        self._hash = hasher(digest)
        self._read = 0
        self._checked = False

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        if n is None or n < 0:  # read to EOF: verify now
            self._hash.update(data)
            self._read += len(data)
            self.check()
            return data
        if data:
            self._hash.update(data)
            self._read += len(data)
            if self.size is not None and self._read > self.size:
                raise DigestError(f"blob {self.digest}: more than the expected {self.size} bytes")
        elif n != 0:
            self.check()
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def check(self) -> None:
        """Raise unless everything read so far is exactly the expected content."""
        if self._checked:
            return
        if self.size is not None and self._read != self.size:
            raise DigestError(
                f"blob {self.digest}: size {self._read} does not match expected {self.size}"
            )
        actual = f"{self._hash.name}:{self._hash.hexdigest()}"
        if actual != self.digest:
            raise DigestError(f"blob {self.digest}: content has digest {actual}")
        self._checked = True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
