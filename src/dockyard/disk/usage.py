"""Taking stock of a store: every deletable thing, by kind, with its size and last use.

Kinds:

- ``images``: blobs a named image reaches (never pruned while named). A blob two
  images share is *shared*; the rest of an image's bytes are its own.
- ``blobs``: blobs nothing names (no image, no build cache record): garbage.
- ``build-cache``: build cache records, each with the layer blob only build records
  name (a layer an image also has is counted under ``images``).
- ``snapshots``: extracted layers; those of no named image's layers are garbage.
- ``cache-mounts``: the dirs of ``RUN --mount=type=cache``.
- ``pipeline-runs``, ``pipeline-caches``: what ``dockyard ci run`` keeps.
- ``containers``: working containers (``dockyard container``), their changes and
  record (not the image under them, nor a mounted rootfs); one a command is using
  is not reclaimable.

*Last use*: for a build cache record the newest of its mtime and atime (a hit reads
it; with ``relatime`` the atime moves at most daily; taking stock reads it with
``O_NOATIME``); for a directory the newest mtime in it (a cache mount written by a RUN
step, a pipeline cache whose mtime a run sets). Sizes count each inode once
(snapshots share inodes).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.builder.cache import CacheRecord
from dockyard.oci import digest as digests
from dockyard.runtime.snapshots import SNAPSHOTS_DIR, chain_ids
from dockyard.store import Store, trash
from dockyard.store.dirs import PIPELINE_CACHE_DIR, PIPELINE_RUNS_DIR
from dockyard.store.gc import blobs_per_root

KINDS = (
    "images", "blobs", "build-cache", "snapshots", "cache-mounts", "pipeline-runs",
    "pipeline-caches", "containers",
)  # fmt: skip
BUILD_CACHE_DIR = Path("build") / "cache"
CACHE_MOUNTS_DIR = Path("build") / "cache-mounts"


@dataclass
class Item:
    """One deletable thing."""

    kind: str
    name: str  # a digest, a record key, a directory name
    size: int
    last_used: float  # seconds since the epoch
    path: Path | None = None
    reclaimable: bool = True  # False: a named image has it
    shared: bool = False  # two or more images have it
    blob: str | None = None  # a build cache record's layer, if only build records name it


@dataclass
class Usage:
    items: list[Item] = field(default_factory=list)

    def of(self, kind: str) -> list[Item]:
        return [item for item in self.items if item.kind == kind]

    @property
    def total(self) -> int:
        return sum(item.size for item in self.items)


def take_stock(store: Store) -> Usage:
    """Everything in ``store`` by kind.

    Read without the GC lock: a figure, not a plan (a prune takes its own decisions under the lock).
    """
    usage = Usage()
    if not store.layout.exists():
        return usage
    root = store.root
    per_image = blobs_per_root(store.layout)
    counts = Counter(digest for blobs in per_image for digest in blobs)
    records = list(_records(root / BUILD_CACHE_DIR))
    cache_blobs = {r.layer.digest for r, _ in records if r.layer} - set(counts)
    for digest in store.blobs:
        path = store.blobs.path(digest)
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        if digest in counts:
            usage.items.append(
                Item("images", digest, info.st_size, _used(info), path, False, counts[digest] > 1)
            )
        elif digest not in cache_blobs:
            usage.items.append(Item("blobs", digest, info.st_size, _used(info), path))
    claimed: set[str] = set()
    for record, path in records:
        info = path.stat()
        blob = record.layer.digest if record.layer else None
        size = info.st_size
        if (
            blob is not None
            and blob in cache_blobs
            and blob not in claimed
            and store.blobs.has(blob)
        ):
            claimed.add(blob)  # two records naming one layer: it counts once
            size += store.blobs.path(blob).stat().st_size
        else:
            blob = None
        usage.items.append(Item("build-cache", record.key, size, _used(info), path, blob=blob))
    _snapshots(store, usage)
    for kind, directory in (
        ("cache-mounts", CACHE_MOUNTS_DIR),
        ("pipeline-runs", PIPELINE_RUNS_DIR),
        ("pipeline-caches", PIPELINE_CACHE_DIR),
    ):
        for entry in _dirs(root / directory):
            path = Path(entry.path)
            size, written = trash.tree_stats(path)
            usage.items.append(Item(kind, entry.name, size, written, path))
    _containers(store, usage)
    return usage


def _containers(store: Store, usage: Usage) -> None:
    """Each working container: the bytes of its own dirs (its merged rootfs, a mount of
    the image's snapshots, is skipped), last written when its newest file was."""
    from dockyard.containers.catalog import Catalog

    for container in Catalog(store).list():
        size, written = 0, 0.0
        for entry in _dirs(container.path):
            if entry.name != container.merged.name:
                more, when = trash.tree_stats(Path(entry.path))
                size, written = size + more, max(written, when)
        for entry in _dirs(container.path, files=True):  # its record, its lock
            with contextlib.suppress(FileNotFoundError):
                info = entry.stat(follow_symlinks=False)
                size, written = size + info.st_size, max(written, info.st_mtime)
        reclaimable = not container.in_use()
        usage.items.append(
            Item("containers", container.name, size, written, container.path, reclaimable)
        )


def _snapshots(store: Store, usage: Usage) -> None:
    stacks = store.image_diff_ids()
    chains = Counter(digests.hex_part(chain) for stack in stacks for chain in set(chain_ids(stack)))
    for entry in _dirs(store.root / SNAPSHOTS_DIR):
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        named = chains.get(entry.name, 0)
        size, written = trash.tree_stats(path)
        usage.items.append(
            Item(
                "snapshots",
                entry.name,
                size,
                written,
                path,
                named == 0,
                named > 1,
            )
        )


def _records(directory: Path):
    for entry in _dirs(directory, files=True):
        path = Path(entry.path)
        try:
            record = CacheRecord.from_dict(entry.name, json.loads(_read_quietly(path)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        yield record, path


def _read_quietly(path: Path) -> bytes:
    """A record's bytes, its atime left alone (``O_NOATIME``): a build's hit moves the
    atime, taking stock must not."""
    fd = os.open(path, os.O_RDONLY | os.O_NOATIME | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read(1 << 20)


def _dirs(directory: Path, *, files: bool = False) -> list[os.DirEntry[str]]:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    return [
        e
        for e in entries
        if not e.name.startswith(".")
        and not trash.is_trash(e.name)
        and (e.is_file(follow_symlinks=False) if files else e.is_dir(follow_symlinks=False))
    ]


def _used(info: os.stat_result) -> float:
    return max(info.st_mtime, info.st_atime)
