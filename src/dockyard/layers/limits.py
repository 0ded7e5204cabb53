"""How far one layer (or one ``ADD`` archive) may expand: the limits and their meter.

A tiny compressed layer can expand to anything: gzip turns a few MB into GBs of zeros,
and a sparse tar member of a few hundred bytes claims a file of any size. Two sizes are
capped, per layer, as it is applied:

- its *expanded* size: the uncompressed tar read, plus the holes of sparse files
  (what decompressing costs in time, and what anything reading the tree back -- packing
  it again, copying it -- pays). ``$DOCKYARD_MAX_LAYER_SIZE``, default 128 GiB;
- the bytes it *writes* to disk: file data only, holes (sparse regions and long zero
  runs) not counted. ``$DOCKYARD_MAX_LAYER_WRITE``, default 32 GiB.

The headers of one member (PAX records, GNU long names, sparse maps), which tarfile
reads whole into memory, may take :data:`HEADER_LIMIT` bytes of the tar: no real header
comes near, and a claimed 30 GiB PAX header would otherwise be held in memory.

Environment variables rather than options: layers are expanded by ``export``, ``run``,
``build`` (base images and ``ADD``), ``layer pull``, ``save`` to a docker-archive and
the CI runner, and the limit is the host operator's policy, the same for all of them
(like ``$DOCKYARD_ROOT``). Values are bytes with an optional binary suffix (``K``,
``M``, ``G``, ``T``), or ``none``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from dockyard.errors import DockyardError, LayerError
from dockyard.oci.streams import Reader

SIZE_VAR = "DOCKYARD_MAX_LAYER_SIZE"
WRITE_VAR = "DOCKYARD_MAX_LAYER_WRITE"
DEFAULT_SIZE = 128 << 30
DEFAULT_WRITE = 32 << 30

HEADER_LIMIT = 16 << 20
_STEP = 1 << 20
_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}
_SIZE = re.compile(r"(\d+)\s*([KMGT]?)(?:I?B)?")


class LayerTooLarge(LayerError):
    """A layer expands past one of the limits."""


def parse_size(text: str, where: str) -> int | None:
    """Bytes from ``64G``, ``512MiB``, ``1048576`` (binary units); None for ``none``.

    Raise :class:`DockyardError` naming ``where`` for anything else."""
    value = text.strip().upper()
    if value == "NONE":
        return None
    match = _SIZE.fullmatch(value)
    if not match or not int(match[1]):  # 0: nothing, or no limit? "none" is clear
        raise DockyardError(f"{where}={text!r}: expected a size such as 64G, or none")
    return int(match[1]) << _UNITS[match[2]]


def format_size(n: int) -> str:
    """``32 GiB``, ``1.5 MiB``, ``100 bytes``."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.4g} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class Limits:
    """The most one layer may expand to (``size``) and write to disk (``write``).

    None is no limit."""

    size: int | None = DEFAULT_SIZE
    write: int | None = DEFAULT_WRITE

    @classmethod
    def from_env(cls) -> Limits:
        """The limits set in the environment, defaults for what is unset."""
        size, write = os.environ.get(SIZE_VAR), os.environ.get(WRITE_VAR)
        return cls(
            DEFAULT_SIZE if size is None else parse_size(size, SIZE_VAR),
            DEFAULT_WRITE if write is None else parse_size(write, WRITE_VAR),
        )


class Meter:
    """What one layer has expanded to and written so far, against ``limits``."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.expanded = 0
        self.written = 0

    def expand(self, n: int) -> None:
        """``n`` more bytes of tar were read, or of holes claimed."""
        self.expanded += n
        limit = self.limits.size
        if limit is not None and self.expanded > limit:
            raise LayerTooLarge(f"expands to more than {format_size(limit)} (limit ${SIZE_VAR})")

    def write(self, n: int) -> None:
        """``n`` more bytes are about to be written to disk."""
        self.written += n
        limit = self.limits.write
        if limit is not None and self.written > limit:
            raise LayerTooLarge(
                f"writes more than {format_size(limit)} to disk (limit ${WRITE_VAR})"
            )


class MeteredReader(io.RawIOBase):
    """``stream`` read through ``meter``: every byte counts towards the expanded size.

    So a decompression bomb stops at the limit instead of at the end of the disk."""

    def __init__(self, stream: Reader, meter: Meter):
        self._stream = stream
        self._meter = meter
        self._header_budget: int | None = None

    @contextlib.contextmanager
    def reading_headers(self) -> Iterator[None]:
        """Within this, at most :data:`HEADER_LIMIT` bytes may be read.

        The tar reader is reading one member's headers, and holds them in memory."""
        self._header_budget = HEADER_LIMIT
        try:
            yield
        finally:
            self._header_budget = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:  # in bounded steps, so the limit stops it in time
            return b"".join(iter(lambda: self.read(_STEP), b""))
        data = self._stream.read(size)
        self._meter.expand(len(data))
        if self._header_budget is not None:
            self._header_budget -= len(data)
            if self._header_budget < 0:
                raise LayerError(
                    f"a tar member's headers take more than {format_size(HEADER_LIMIT)}"
                )
        return data

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
