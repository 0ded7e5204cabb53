"""Build records (cache records, lineage, context indexes) written without an fsync each.

A rebuild after an edit writes a dozen small records; an fsync of each (and of its
directory) cost more than the rest of the build. Instead each is published as a
blob is (:mod:`dockyard.files.unsynced`): written to a hidden temp file, a marker
holding this boot's ID created in ``<store>/build/unsynced/<kind>/<name>``, then the
temp file renamed (or linked) into place, never synced.

The crash story: a killed process loses nothing (its writes are in the page cache), so
a record marked in this boot is whole. A crash of the machine may lose what was not
written back yet: the rename may reach the disk with the data behind it missing
(an empty or stale file). The marker was created before the rename, and a journalling
filesystem commits metadata in order, so a renamed record always has its marker; after
the reboot that marker names another boot (or was emptied by the crash), and the
record counts as missing: a cache miss, no last run, no stat cache. The step runs again
and its new record replaces the distrusted one. :meth:`RecordMarkers.settle` (after a
prune) syncs once and drops the markers, so records made before it survive reboots.

Markers are created and records renamed under the store's lease (a shared lock), and
settled under its GC lock: a settle never drops the marker of a record renamed after
its sync.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dockyard.files import atomic
from dockyard.files.locking import FileLock
from dockyard.files.unsynced import UnsyncedMarkers
from dockyard.store.store import GC_LOCK_FILE

UNSYNCED_DIR = Path("build") / "unsynced"


class RecordMarkers:
    """The unsynced markers of the records in one directory of a store.

    ``kind``: ``cache``, ``lineage``, ``context-index``, the directory's name under
    ``build/``.
    """

    def __init__(self, store_root: Path, kind: str):
        self.store_root = store_root
        self.markers = UnsyncedMarkers(store_root / UNSYNCED_DIR / kind)

    def whole(self, name: str) -> bool:
        """False if the record ``name`` was written in another boot and never synced.

        A crash may have left it empty or stale, so it must not be trusted.
        """
        return self.markers.whole(name)

    @contextmanager
    def publishing(self, name: str) -> Iterator[bool]:
        """Hold the store's lease and mark ``name`` unsynced for the block.

        The block renames the record into place. Yields whether the record there before
        (if any) was whole, as read before the marker was made.
        """
        with FileLock(self.store_root / GC_LOCK_FILE, shared=True):
            was_whole = self.markers.whole(name)
            self.markers.mark(name)
            yield was_whole

    def write(self, target: Path, data: bytes) -> None:
        """Replace the record ``target`` with ``data``: atomic, marked, not synced."""
        with atomic.temp_file(target.parent, target.name) as (f, temp):
            f.write(data)
            with self.publishing(target.name):
                atomic.publish(f, temp, target)

    def settle(self, directory: Path) -> None:
        """Sync once and drop the markers of this boot, and of records no longer in ``directory``.

        Call it under the store's GC lock.
        """
        self.markers.settle(lambda name: os.path.lexists(directory / name))
