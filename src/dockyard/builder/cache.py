"""The build cache: what a layer-producing step made, by the step's cache key.

A key covers everything that decides a step's result: the state it starts from (the
parent's layers and config, by content), the instruction after expansion, the ARGs it
can see, content checksums of what it copies and of its mount sources, every flag and
mount option, SOURCE_DATE_EPOCH. A record names the layer the step produced and when it
was made; the layer itself is an ordinary blob of the store.

Records live in ``<store>/build/cache/<key>``. A record, once written, is never replaced
by one naming another layer (:meth:`BuildCache.put`): a ``--no-cache`` build of the
same step adds nothing then, so other images' cached builds keep their digests. They
are written without an fsync, marked unsynced instead: one a crash may have damaged is
a miss (see :mod:`.durability`).
``--cache-from`` adds the records of a cache image in a registry (their blobs are
fetched only when needed); ``--cache-to`` writes one (see
:mod:`dockyard.builder.cache_export`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from dockyard.builder.durability import RecordMarkers
from dockyard.builder.frontend.records import Record, record
from dockyard.errors import DockyardError
from dockyard.files import atomic
from dockyard.files.locking import FileLock
from dockyard.oci.descriptor import Descriptor
from dockyard.store import Store


@record
class CacheRecord(Record):
    """A step's result: the layer it added, its diff ID and when it was made.

    ``layer`` is None if the step changed no file. ``created`` is its history time in
    every image that reuses it, so that a rebuild that hits everywhere gives the same
    image; None in records older than that.
    """

    key: str
    layer: Descriptor | None
    diff_id: str | None
    created: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer.to_dict() if self.layer else None,
            "diff_id": self.diff_id,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, key: str, doc: dict[str, Any]) -> CacheRecord:
        layer = doc.get("layer")
        created = doc.get("created")
        return cls(
            key,
            Descriptor.from_dict(layer) if layer else None,
            doc.get("diff_id"),
            created if isinstance(created, str) and _is_time(created) else None,
        )


class BuildCache:
    """Local records plus those imported from cache images; thread-safe."""

    def __init__(self, store_root: Path):
        self.directory = store_root / "build" / "cache"
        self.markers = RecordMarkers(store_root, "cache")
        self._imported: dict[str, tuple[CacheRecord, str]] = {}  # key -> (record, source)
        self._used: dict[str, CacheRecord] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[CacheRecord, str | None] | None:
        """The record for ``key`` and, if it came from a cache image, that image's name."""
        path = self.directory / key
        try:
            if not self.markers.whole(key):
                raise FileNotFoundError(key)  # a crash may have damaged it: a miss
            record = CacheRecord.from_dict(key, json.loads(path.read_bytes()))
            origin = None
        except FileNotFoundError:
            with self._lock:
                found = self._imported.get(key)
            if found is None:
                return None
            record, origin = found
        except (ValueError, KeyError):
            return None  # a damaged record is a miss, not an error
        with self._lock:
            self._used[key] = record
        return record, origin

    def put(self, record: CacheRecord) -> None:
        """Record a step's result, unless a sound record for its key exists already.

        That one stays (a damaged one, or one a crash may have damaged, is replaced).
        ``os.link`` never replaces, so of two builds writing one key at once the first
        wins. Not synced: marked (see :mod:`.durability`), under the directory's lock,
        so that no writer reads a marker another is writing.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / record.key
        with atomic.temp_file(self.directory, record.key) as (f, temp):
            f.write(json.dumps(record.to_dict()).encode())
            f.flush()
            os.fchmod(f.fileno(), atomic.FILE_MODE)
            try:
                with (
                    FileLock(self.directory, directory=True),
                    self.markers.publishing(record.key) as was_whole,
                ):
                    try:
                        os.link(temp, target)
                    except FileExistsError:
                        if not was_whole or _read(target) is None:
                            os.replace(temp, target)
            finally:
                temp.unlink(missing_ok=True)
        with self._lock:
            self._used[record.key] = record

    def add_imported(self, records: dict[str, CacheRecord], origin: str) -> None:
        with self._lock:
            for key, record in records.items():
                self._imported.setdefault(key, (record, origin))

    def prune(self, has_blob: Callable[[str], bool]) -> int:
        """Delete the local records whose layer blob is gone (a prune took it).

        They could only miss. Return how many went.
        """
        removed = 0
        for path in _records(self.directory):
            record = _read(path) if self.markers.whole(path.name) else None  # None: a miss
            if record is None or (record.layer is not None and not has_blob(record.layer.digest)):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    @property
    def used(self) -> dict[str, CacheRecord]:
        """Records this build hit or wrote: what ``--cache-to`` exports."""
        with self._lock:
            return dict(self._used)


def _is_time(text: str) -> bool:
    """Is ``text`` an RFC 3339 time (a record may come from a hostile cache image)?"""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return len(text) <= 64


def _read(path: Path) -> CacheRecord | None:
    """The record at ``path``, or None if it is missing or damaged."""
    try:
        return CacheRecord.from_dict(path.name, json.loads(path.read_bytes()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, DockyardError):
        return None


def _records(directory: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(directory) if not e.name.startswith(".")]
    except FileNotFoundError:
        return []


def step_key(parent: str, payload: dict[str, Any]) -> str:
    """The cache key of a step: the parent state's identity plus what the step does."""
    doc = json.dumps({"parent": parent, **payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(doc.encode()).hexdigest()


def prune_build_records(store: Store, snapshot_exists: Callable[[str], bool]) -> int:
    """Delete the build records that name what a prune of the store's blobs and snapshots took.

    Run it after that prune. It deletes those records (cache records, :mod:`.lineage`
    records) and the temp files of killed writers among them, then syncs the records
    written since the last prune and drops their markers (:mod:`.durability`). Return
    how many records went.
    """
    from dockyard.builder.context import INDEX_DIR
    from dockyard.builder.lineage import StepLineage

    has_blob = store.blobs.has
    cache = BuildCache(store.root)
    lineage = StepLineage(store.root)
    removed = cache.prune(has_blob)
    removed += lineage.prune(lambda run: snapshot_exists(run.chain) and has_blob(run.layer.digest))
    for directory in (cache.directory, lineage.directory):
        atomic.remove_stale_temps(directory, older_than=3600)
    with store.gc_lock():
        cache.markers.settle(cache.directory)
        lineage.markers.settle(lineage.directory)
        RecordMarkers(store.root, INDEX_DIR.name).settle(store.root / INDEX_DIR)
    return removed
