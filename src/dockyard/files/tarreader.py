"""Random access to the members of an uncompressed tar archive, without extracting it.

The member table is read once (``tarfile`` seeks over the data); a member is then read
with ``os.pread`` at its offset, so any number of threads can stream different members
from one open file at once.
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile
from pathlib import Path
from types import TracebackType
from typing import Any

from dockyard.errors import ManifestError, NotFound, StoreError

MAX_LINK_HOPS = 16


def _normalize(name: str) -> str:
    return posixpath.normpath(name.lstrip("/")).removeprefix("./")


class TarReader:
    """The regular-file members of the tar at ``path``, by normalised name.

    Symlinks and hard links to regular members (``docker save`` links duplicate
    layers) resolve to their target. Compressed archives are refused: offsets into
    the data only exist in a plain tar.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with tarfile.open(self.path, "r:") as tar:
                members = {_normalize(m.name): m for m in tar.getmembers()}
        except FileNotFoundError:
            raise NotFound(f"archive {self.path} not found") from None
        except tarfile.ReadError as e:
            raise StoreError(f"{self.path} is not an uncompressed tar archive: {e}") from None
        except OSError as e:
            raise StoreError(f"cannot read archive {self.path}: {e}") from None
        self._files: dict[str, tuple[int, int]] = {}
        for name in members:
            target = self._resolve(members, name)
            if target is not None:
                self._files[name] = (target.offset_data, target.size)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)

    @staticmethod
    def _resolve(members: dict[str, tarfile.TarInfo], name: str) -> tarfile.TarInfo | None:
        member = members[name]
        for _ in range(MAX_LINK_HOPS):
            if member.isfile():
                return member
            if member.issym():
                name = _normalize(posixpath.join(posixpath.dirname(name), member.linkname))
            elif member.islnk():
                name = _normalize(member.linkname)
            else:
                return None
            if name not in members:
                return None
            member = members[name]
        return None

    def names(self) -> list[str]:
        return sorted(self._files)

    def has(self, name: str) -> bool:
        return _normalize(name) in self._files

    def size(self, name: str) -> int:
        return self._lookup(name)[1]

    def open(self, name: str) -> _MemberReader:
        """A stream of one member's bytes."""
        offset, size = self._lookup(name)
        return _MemberReader(self._fd, offset, size)

    def read_json(self, name: str, limit: int = 16 << 20) -> Any:
        """A small JSON member, parsed; raise :class:`ManifestError` naming it."""
        if self.size(name) > limit:
            raise ManifestError(f"{self.path}: {name} is too big")
        with self.open(name) as f:
            return parse_json(self.path, name, f.read())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TarReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()

    def _lookup(self, name: str) -> tuple[int, int]:
        try:
            return self._files[_normalize(name)]
        except KeyError:
            raise NotFound(f"{name} not found in archive {self.path}") from None


class _MemberReader:
    """A file-like reader of ``size`` bytes at ``offset`` of a shared descriptor."""

    def __init__(self, fd: int, offset: int, size: int):
        self._fd = fd
        self._pos = offset
        self._end = offset + size

    def read(self, n: int = -1) -> bytes:
        remaining = self._end - self._pos
        if n < 0 or n > remaining:
            n = remaining
        if n == 0:
            return b""
        data = os.pread(self._fd, n, self._pos)
        if not data:
            raise StoreError("archive ended inside a member (truncated file?)")
        self._pos += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def __enter__(self) -> _MemberReader:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def parse_json(where: Path, name: str, data: bytes) -> Any:
    """``data``, the member or file ``name`` of ``where``, parsed as JSON; raise
    :class:`ManifestError` naming both."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{where}: {name}: invalid JSON: {e}") from None
