"""A content-addressed blob directory: ``<root>/<algorithm>/<hex>``, as in an OCI layout.

Every blob is verified against its digest as it streams in (and again as it streams
out), in chunks, never whole in memory. A write goes to a hidden temp file in the same
filesystem and is renamed into place only once the digest matched, so a blob path
always holds complete, correct content; two writers of one digest both succeed (same
bytes, last rename wins).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dockyard.errors import DigestError, NotFound, StoreError
from dockyard.files import atomic
from dockyard.files.unsynced import UnsyncedMarkers
from dockyard.oci import digest as digests
from dockyard.oci.digest import CHUNK, VerifyingReader
from dockyard.oci.streams import ReadCloser

_HEX_RE = {"sha256": re.compile(r"^[a-f0-9]{64}$"), "sha512": re.compile(r"^[a-f0-9]{128}$")}
STALE_TEMP_SECONDS = 24 * 3600


class BlobDir:
    """Blobs under ``root`` (an OCI layout's ``blobs/``); temp files in ``tmp_dir``.

    ``tmp_dir`` defaults to each algorithm directory itself (hidden names); it must be
    on the same filesystem as ``root``. Each blob is fsynced before it is renamed into
    place, unless ``unsynced`` is given: then it is marked there instead (see
    :mod:`.unsynced`), and one a crash may have damaged counts as absent.
    """

    def __init__(
        self, root: Path, tmp_dir: Path | None = None, unsynced: UnsyncedMarkers | None = None
    ):
        self.root = root
        self.tmp_dir = tmp_dir
        self.unsynced = unsynced

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (whether or not it exists)."""
        algorithm, hex_part = digests.validate(digest).split(":", 1)
        return self.root / algorithm / hex_part

    def has(self, digest: str) -> bool:
        path = self.path(digest)
        return path.is_file() and (self.unsynced is None or self.unsynced.whole(_key(path)))

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in {self.root}") from None

    def open(self, digest: str, size: int | None = None) -> VerifyingReader:
        """A stream of the blob that raises :class:`DigestError` at EOF if it is corrupt."""
        try:
            f = open(self.path(digest), "rb")  # noqa: SIM115 - owned by the returned reader
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in {self.root}") from None
        return VerifyingReader(f, digest, size)

    def read_bytes(self, digest: str, size: int | None = None) -> bytes:
        """A small blob (a manifest, a config), verified."""
        with self.open(digest, size) as reader:
            data = reader.read()
            reader.check()
        return data

    def write(self, digest: str, stream: ReadCloser, size: int | None = None) -> Path:
        """Store the blob read from ``stream``, checked against ``digest``.

        Raise :class:`DigestError` and keep nothing if its bytes do not match ``digest`` (and
        ``size`` when given).

        Returns at once if the blob is already present.
        """
        target = self.path(digest)
        if self.has(digest):
            return target
        directory = self._ensure_dir(target.parent)
        try:
            with atomic.temp_file(self.tmp_dir or directory, target.name[:12]) as (f, temp):
                reader = digests.verified(stream, digest, size)
                writeback = atomic.EarlyWriteback(f) if self.unsynced is None else None
                while chunk := reader.read(CHUNK):
                    f.write(chunk)
                    if writeback:
                        writeback.wrote(len(chunk))
                self.place(f, temp, target)
        except OSError as e:
            raise StoreError(f"cannot write blob {digest} to {self.root}: {e}") from None
        return target

    @contextlib.contextmanager
    def ingest(self) -> Iterator[Ingest]:
        """Write a blob whose digest is known only once it is written (a layer being packed).

        Write to ``.file``, then ``.commit(digest)``; uncommitted, nothing is kept.
        """
        directory = self._ensure_dir(self.root / "sha256")
        with atomic.temp_file(self.tmp_dir or directory, "ingest") as (f, temp):
            blob = Ingest(self, f, temp)
            yield blob
            if not blob.committed:
                temp.unlink()

    def write_bytes(self, data: bytes, digest: str | None = None) -> str:
        """Store a small blob held in memory; return its digest (sha256 unless given)."""
        digest = digest or digests.of_bytes(data)
        self.write(digest, io.BytesIO(data), len(data))
        return digest

    def delete(self, digest: str) -> bool:
        """Remove a blob; False if it was not there."""
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        """Digests of the blobs present (temp files and foreign names are skipped)."""
        for algorithm, hex_re in _HEX_RE.items():
            try:
                entries = list(os.scandir(self.root / algorithm))
            except FileNotFoundError:
                continue
            for entry in entries:
                if hex_re.match(entry.name) and entry.is_file(follow_symlinks=False):
                    yield f"{algorithm}:{entry.name}"

    def remove_stale_temps(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Delete temp files left by killed writers; count them."""
        dirs = [self.tmp_dir] if self.tmp_dir else [self.root / a for a in _HEX_RE]
        return sum(atomic.remove_stale_temps(d, older_than) for d in dirs)

    def place(self, f: BinaryIO, temp: Path, target: Path) -> None:
        """Move the written temp file ``f`` onto the blob path ``target``.

        It is fsynced, or marked unsynced first."""
        if self.unsynced is None:
            atomic.commit(f, temp, target)
            return
        self.unsynced.mark(_key(target))
        atomic.publish(f, temp, target)

    def settle(self) -> None:
        """Sync the blobs written unsynced and drop their markers (see :mod:`.unsynced`).

        Call it only where no writer can be running."""
        if self.unsynced is not None:
            self.unsynced.settle(lambda key: (self.root / key.replace("-", "/", 1)).is_file())

    def _ensure_dir(self, directory: Path) -> Path:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if self.tmp_dir:
                self.tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create {directory}: {e.strerror}") from None
        return directory


def _key(path: Path) -> str:
    """A blob's marker name: ``<algorithm>-<hex>``."""
    return f"{path.parent.name}-{path.name}"


class Ingest:
    """A blob being written through :meth:`BlobDir.ingest`; hashed as it is written."""

    def __init__(self, blobs: BlobDir, f: BinaryIO, temp: Path):
        self.file = _HashingWriter(f)
        self.committed = False
        self._blobs = blobs
        self._f = f
        self._temp = temp

    def commit(self, digest: str) -> Path:
        """Check what was written is ``digest`` (sha256) and move it into place."""
        actual = f"sha256:{self.file.hash.hexdigest()}"
        if digests.validate(digest) != actual:
            raise DigestError(f"blob {digest}: content written has digest {actual}")
        target = self._blobs.path(digest)
        try:
            self._blobs.place(self._f, self._temp, target)
        except OSError as e:
            raise StoreError(f"cannot write blob {digest} to {self._blobs.root}: {e}") from None
        self.committed = True
        return target


class _HashingWriter:
    """A write-only stream that hashes (sha256) and counts what passes to ``f``."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self._f.write(data)

    def writable(self) -> bool:
        return True
