"""Write an uncompressed tar member by member, from many threads, then publish it whole.

The archive grows in a hidden temp file next to its final path and is renamed into
place by :meth:`TarWriter.commit`; until then no reader can see it. A member whose
stream fails (a digest mismatch, a network error) is cut off again, so the archive
never holds a partial member.
"""

from __future__ import annotations

import io
import tarfile
import threading
import weakref
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from dockyard.errors import DigestError, StoreError
from dockyard.files import atomic
from dockyard.oci.digest import CHUNK
from dockyard.oci.streams import Reader

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


class TarWriter:
    """A tar archive being written to ``path``; members are added under a lock."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self._done = False
        try:
            self._file, self._temp = atomic.create_temp(self.path.parent, self.path.name)
        except OSError as e:
            raise StoreError(f"cannot write archive {self.path}: {e.strerror}") from None
        # A writer dropped without commit() or abort() (a failed copy) leaves no temp file.
        self._finalizer = weakref.finalize(self, _discard, self._file, self._temp)

    def has(self, name: str) -> bool:
        with self._lock:
            return name in self._names

    def add(self, name: str, stream: Reader, size: int) -> None:
        """Append ``name`` with exactly ``size`` bytes read from ``stream``.

        The stream is read to its end (so a verifying stream checks its digest); if it
        is shorter or longer, or raises, the member is removed and the error raised.
        Names are content addresses here: a name already present is skipped unread.
        """
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        with self._lock:
            self._check_open()
            if name in self._names:
                return
            start = self._file.tell()
            try:
                self._file.write(header)
                remaining = size
                while remaining:
                    chunk = stream.read(min(CHUNK, remaining))
                    if not chunk:
                        raise DigestError(f"{name}: stream ended {remaining} bytes short")
                    self._file.write(chunk)
                    remaining -= len(chunk)
                if stream.read(1):
                    raise DigestError(f"{name}: stream is longer than {size} bytes")
                self._file.write(b"\0" * (-size % BLOCK))
            except BaseException as e:
                self._file.seek(start)
                self._file.truncate()
                if isinstance(e, OSError):
                    raise StoreError(f"cannot write {name} to archive {self.path}: {e}") from e
                raise
            self._names.add(name)

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add(name, io.BytesIO(data), len(data))

    def commit(self) -> None:
        """End the archive, fsync it and rename it onto ``path``."""
        with self._lock:
            self._check_open()
            self._file.write(b"\0" * (2 * BLOCK))
            self._file.write(b"\0" * (-self._file.tell() % RECORD))
            try:
                atomic.commit(self._file, self._temp, self.path)
            except OSError as e:
                self._abort_locked()
                raise StoreError(f"cannot write archive {self.path}: {e}") from None
            self._file.close()
            self._finalizer.detach()
            self._done = True

    def abort(self) -> None:
        """Throw the unfinished archive away (a no-op after :meth:`commit`)."""
        with self._lock:
            if not self._done:
                self._abort_locked()

    def __enter__(self) -> TarWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()

    def _abort_locked(self) -> None:
        self._finalizer()
        self._done = True

    def _check_open(self) -> None:
        if self._done:
            raise StoreError(f"archive {self.path} is already committed or aborted")


def _discard(f: BinaryIO, temp: Path) -> None:
    f.close()
    temp.unlink(missing_ok=True)
