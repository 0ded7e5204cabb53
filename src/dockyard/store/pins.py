"""Pins: names a record on disk keeps from a prune, whoever is running.

A hold (:mod:`.holds`) lasts as long as the process that took it; a working container
outlives every process that touches it, so the blobs and snapshots it stands on are
*pinned* instead: a file ``<pins dir>/<owner>`` lists them, one name a line, and a
prune spares every name in every pin file. Blob digests and snapshot names (a chain
ID's hex) share the files: each prune keeps what it knows and ignores the rest.

Protocol, as for holds: pins are written under the store's lease and read under its GC
lock, so a prune sees a pin or runs entirely before it was written. A pin file is
replaced atomically; an owner removes its file when it no longer needs the names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from dockyard.errors import StoreError
from dockyard.files import atomic

_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def _path(directory: Path, owner: str) -> Path:
    if not _OWNER.match(owner):
        raise StoreError(f"{owner!r} cannot name a pin file")
    return directory / owner


def pin(directory: Path, owner: str, names: Iterable[str]) -> None:
    """Make ``owner``'s pins exactly ``names``. Call it under the store's lease."""
    data = "".join(f"{name}\n" for name in dict.fromkeys(names)).encode()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(_path(directory, owner), data)
    except OSError as e:
        raise StoreError(f"cannot write pins in {directory}: {e.strerror}") from None


def unpin(directory: Path, owner: str) -> None:
    """Drop every pin of ``owner``."""
    _path(directory, owner).unlink(missing_ok=True)


def pinned_names(directory: Path) -> set[str]:
    """Every name a pin file in ``directory`` lists. Call it under the GC lock."""
    names: set[str] = set()
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return names
    for entry in entries:
        if atomic.is_temp(entry.name):
            continue
        try:
            names.update(Path(entry.path).read_text(errors="replace").split())
        except FileNotFoundError:
            continue
    return names
