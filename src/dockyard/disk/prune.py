"""``dockyard prune`` with policies, as BuildKit's GC has them.

Garbage (``blobs`` nothing names, ``snapshots`` of no named image's layers) always
goes. Beyond it, what is kept for speed -- ``build-cache`` records with their layers,
``cache-mounts``, and with a policy or a filter naming them ``pipeline-runs`` and
``pipeline-caches`` -- goes by policy, as do stopped working ``containers`` when asked
for (``containers``: they hold someone's changes, so never by a policy alone):

- no policy: all the build cache whose layers no image has (as a bare ``dockyard
  prune`` does: it keeps only what named images need); cache mounts and pipelines only
  if ``kinds`` names them;
- ``until``: what was last used longer ago than that;
- ``keep_storage``: then the least recently used, until the store is under that size.

``kinds`` (``--filter type=…``) limits all of it to some kinds. Named images are never
deleted. What a live process uses is spared, however the plan was made: blobs and
snapshots a build or container holds (the existing holds), pipeline runs and caches a
run in progress holds, cache mounts while any build or container runs (they hold no
hold of their own; see the README), and a container a command holds (its lock). A
plan (``dry_run``) deletes nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.disk.usage import Item, Usage, take_stock
from dockyard.runtime import mounts
from dockyard.runtime.snapshots import SNAPSHOTS_DIR, Snapshots
from dockyard.store import Store, as_store, trash
from dockyard.store.dirs import PIPELINE_HOLDS_DIR
from dockyard.store.holds import held_names

GARBAGE_KINDS = ("blobs", "snapshots")
POLICY_KINDS = ("build-cache", "cache-mounts", "pipeline-runs", "pipeline-caches", "containers")
PRUNABLE = GARBAGE_KINDS + POLICY_KINDS
_SNAPSHOT_HOLDS = Path(SNAPSHOTS_DIR) / ".holds"


@dataclass(frozen=True)
class PrunePolicy:
    kinds: frozenset[str] | None = None  # None: garbage and build cache; all with a policy
    until: float | None = None  # seconds unused
    keep_storage: int | None = None  # bytes
    containers: bool = False  # stopped working containers may go too

    @property
    def has_policy(self) -> bool:
        return self.until is not None or self.keep_storage is not None

    def covers(self, kind: str) -> bool:
        if kind == "containers":
            return self.containers and (self.kinds is None or kind in self.kinds)
        if self.kinds is not None:
            return kind in self.kinds
        return kind in (*GARBAGE_KINDS, "build-cache") or self.has_policy


@dataclass
class PruneReport:
    """What went (or would go), per kind: ``(count, bytes)``; what was spared in use."""

    removed: dict[str, list[Item]] = field(default_factory=dict)
    freed: dict[str, int] = field(default_factory=dict)
    spared: list[Item] = field(default_factory=list)
    temps: int = 0

    def add(self, item: Item, freed: int | None = None) -> None:
        self.removed.setdefault(item.kind, []).append(item)
        self.freed[item.kind] = self.freed.get(item.kind, 0) + (
            item.size if freed is None else freed
        )


def plan(usage: Usage, policy: PrunePolicy, now: float) -> list[Item]:
    """The items ``policy`` deletes, garbage first, then least recently used first."""
    chosen = [
        item
        for item in usage.items
        if item.kind in GARBAGE_KINDS and item.reclaimable and policy.covers(item.kind)
    ]
    candidates = sorted(
        (
            item
            for item in usage.items
            if item.kind in POLICY_KINDS and policy.covers(item.kind) and item.reclaimable
        ),
        key=lambda item: item.last_used,
    )
    if not policy.has_policy:
        chosen += [
            item
            for item in candidates
            if item.kind != "build-cache" or item.blob is not None  # its layer only it names
        ]
        return chosen
    if policy.until is not None:
        cutoff = now - policy.until
        chosen += [item for item in candidates if item.last_used < cutoff]
    if policy.keep_storage is not None:
        taken = {id(item) for item in chosen}
        left = usage.total - sum(item.size for item in chosen)
        for item in candidates:
            if left <= policy.keep_storage:
                break
            if id(item) not in taken:
                chosen.append(item)
                left -= item.size
    return chosen


@dataclass
class PruneSummary:
    """What :func:`prune` did, or would do.

    ``report``: per kind, what went (or would go; a prune without a policy counts blobs
    and snapshots, their bytes per kind); ``build_records``: the build records that named
    what went; ``leftovers``: what killed processes left and was reaped (their
    containers, temp files and dirs).
    """

    report: PruneReport
    build_records: int = 0
    leftovers: int = 0


def prune(
    store: Store | str | Path | None = None,
    policy: PrunePolicy | None = None,
    *,
    dry_run: bool = False,
) -> PruneSummary:
    """``dockyard prune``: reap what killed processes left, then delete what no image needs.

    That is the blobs and snapshots no named image needs and the build records naming
    them; with a ``policy`` (or ``dry_run``, which deletes nothing) what it chooses too.
    Killed containers go first (their rootfs are overlays of snapshots), then each
    working container's lock is taken once, which repairs a killed run's (its changes
    stay). Named images and what live processes use are never deleted.
    """
    from dockyard.containers.catalog import Catalog
    from dockyard.errors import ContainerError
    from dockyard.runtime.container import reap_orphans

    opened = as_store(store)
    orphans = len(reap_orphans(opened.root))
    catalog = Catalog(opened)
    for found in catalog.list():
        with contextlib.suppress(ContainerError), catalog.locked(found):
            pass  # taking the lock repairs (see Catalog.locked)
    if policy is not None or dry_run:
        report = prune_by_policy(opened, policy or PrunePolicy(), dry_run=dry_run)
        return PruneSummary(report, leftovers=report.temps + orphans)
    return _prune_garbage(opened, orphans)


def _prune_garbage(store: Store, orphans: int) -> PruneSummary:
    """The prune with no policy: unreachable blobs and snapshots, and their records."""
    from dockyard.builder.cache import prune_build_records

    blobs = store.prune()
    with Snapshots(store) as snapshots:
        pruned = snapshots.prune()
        records = prune_build_records(store, snapshots.exists)
    report = PruneReport(temps=blobs.temps + pruned.temps)
    for kind, result in (("blobs", blobs), ("snapshots", pruned)):
        report.removed[kind] = [Item(kind, name, 0, 0.0) for name in result.removed]
        report.freed[kind] = result.freed
    return PruneSummary(report, records, orphans + report.temps)


def prune_by_policy(store: Store, policy: PrunePolicy, *, dry_run: bool = False) -> PruneReport:
    """Delete what ``policy`` chooses (nothing if ``dry_run``), sparing what is in use."""
    from dockyard.builder.cache import prune_build_records

    report = PruneReport()
    usage = take_stock(store)
    doomed = plan(usage, policy, time.time())
    if dry_run:
        for item in doomed:
            report.add(item)
        return report
    by_kind: dict[str, list[Item]] = {}
    for item in doomed:
        by_kind.setdefault(item.kind, []).append(item)
    if policy.covers("containers"):  # first: their pins go, and with them what only they kept
        _prune_containers(store, by_kind.get("containers", []), report)
    _prune_build_cache(store, usage, policy, by_kind.get("build-cache", []), report)
    if policy.covers("snapshots"):
        with Snapshots(store) as snapshots:
            result = snapshots.prune()
        sizes = {item.name: item for item in usage.of("snapshots")}
        for chain in result.removed:
            hex_id = chain.partition(":")[2]
            report.add(sizes.get(hex_id) or Item("snapshots", hex_id, 0, 0.0))
        report.temps += result.temps
    with Snapshots(store) as snapshots:  # the records of what went, lineage's too
        prune_build_records(store, snapshots.exists)
    _prune_dirs(store, by_kind, report)
    return report


def _prune_build_cache(
    store: Store, usage: Usage, policy: PrunePolicy, doomed: list[Item], report: PruneReport
) -> None:
    """Delete the chosen records, then the blobs: all garbage if ``blobs`` is covered
    (but the layers of the records kept, under a policy), else only the chosen
    records' layers."""
    for item in doomed:
        if item.path is not None:
            item.path.unlink(missing_ok=True)
    gone = {id(item) for item in doomed}
    kept_layers = (
        {item.blob for item in usage.of("build-cache") if item.blob and id(item) not in gone}
        if policy.has_policy or not policy.covers("build-cache")
        else set()
    )
    only: Collection[str] | None = None
    if not policy.covers("blobs"):
        only = {item.blob for item in doomed if item.blob}
    result = store.prune(keep=kept_layers, only=only)
    report.temps += result.temps
    blobs = {item.name: item for item in usage.of("blobs")}
    for item in doomed:  # a layer a running build holds stays: only its record went
        kept = 0
        if item.blob is not None and store.blobs.has(item.blob):
            kept = store.blobs.path(item.blob).stat().st_size
        report.add(item, item.size - kept)
    for digest in result.removed:
        if digest in blobs:
            report.add(blobs[digest])


def _prune_containers(store: Store, doomed: list[Item], report: PruneReport) -> None:
    """Remove the chosen containers as ``dockyard container prune`` does, sparing any a
    command holds now (its lock), then what killed creates left."""
    from dockyard.containers.catalog import Catalog
    from dockyard.errors import ContainerError, NotFound

    catalog = Catalog(store)
    for item in doomed:
        try:
            with catalog.locked(catalog.get(item.name)) as container:
                catalog.remove(container)
        except NotFound:
            continue  # removed meanwhile
        except ContainerError:
            report.spared.append(item)  # busy, or mounted and in use on the host
            continue
        report.add(item)
    report.temps += catalog.remove_leftovers()


def _prune_dirs(store: Store, by_kind: dict[str, list[Item]], report: PruneReport) -> None:
    """Cache mounts, pipeline runs and caches: moved to the trash under the GC lock
    unless in use, deleted after it."""
    doomed: list[tuple[Item, Path]] = []
    with store.gc_lock():
        builds_running = bool(held_names(store.root / _SNAPSHOT_HOLDS))
        pipeline_held = held_names(store.root / PIPELINE_HOLDS_DIR)
        for kind in ("cache-mounts", "pipeline-runs", "pipeline-caches"):
            for item in by_kind.get(kind, []):
                busy = builds_running if kind == "cache-mounts" else item.name in pipeline_held
                if busy or item.path is None:
                    report.spared.append(item)
                    continue
                if kind == "pipeline-runs":
                    mounts.unmount_all(item.path)  # a killed run's network namespace
                if gone := trash.move_to_trash(item.path):
                    doomed.append((item, gone))
    for item, path in doomed:
        report.add(item, trash.remove_tree(path))
