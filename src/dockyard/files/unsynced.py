"""Durability without an fsync per write: markers of what is not synced to disk yet.

Syncing each blob or snapshot as it is written costs the whole write again on a slow
disk, and ``syncfs`` writes out *everything* cached for the filesystem -- with other
jobs' dirty data about, one costs seconds. Instead, before a new file or directory is
renamed into place, a marker holding the current boot ID is created under its name. A
rename that reached the disk implies its marker's creation did (filesystem journals
commit metadata in order). So after a crash, a marker from another boot (or one the
crash emptied) says the thing may have lost data: it counts as absent and is made again.
A killed *process* loses nothing (the page cache survives it), so markers of this boot
mean good data. :meth:`UnsyncedMarkers.settle` syncs once and drops this boot's markers.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path

from dockyard.files import atomic

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class UnsyncedMarkers:
    """The markers in ``directory``, one file per name."""

    def __init__(self, directory: Path):
        self.directory = directory

    def mark(self, name: str) -> None:
        """Record that ``name`` is about to be renamed into place unsynced.

        A marker of this boot stays as it is; any other is replaced by renaming a whole
        new one into place, so a reader never sees a marker half-written (an emptied
        marker reads as "another boot": the thing it names would look lost).
        """
        if self._boot_of(name) == _boot_id():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(self.directory / name, _boot_id().encode(), durable=False)

    def whole(self, name: str) -> bool:
        """False if ``name`` was written in another boot and never synced."""
        boot = self._boot_of(name)
        return boot is None or boot == _boot_id()  # None: synced, or from before markers

    def _boot_of(self, name: str) -> str | None:
        try:
            return (self.directory / name).read_text()
        except FileNotFoundError:
            return None

    def settle(self, present: Callable[[str], bool]) -> None:
        """Sync every filesystem once, then drop the markers that are no longer needed.

        Those are the markers of this boot and those of names no longer ``present``. Call it where
        no writer can be marking."""
        try:
            markers = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        os.sync()
        for marker in markers:
            if not present(marker.name) or self.whole(marker.name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(marker.path)


@functools.cache
def _boot_id() -> str:
    """This boot's random ID (a different one after every reboot)."""
    return _BOOT_ID.read_text().strip()
