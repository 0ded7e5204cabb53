"""Deleting what pipeline runs leave in the store: old runs, and caches left unused.

``prune(store, keep=10)`` deletes every run but the newest ``keep``, with its logs,
artifacts and record; with ``caches_unused_for=SECONDS`` it also deletes the cache
dirs no step has used for that long (a use sets a cache dir's mtime). A run in
progress and the caches it uses are never taken: its process holds them
(:mod:`dockyard.store.holds`) and the hold ends with the process, however it ends, so
a killed run's directory does go, after its leftover mounts are detached.

What a killed run leaves elsewhere goes too, whether or not its record is kept: its
containers (:func:`~dockyard.runtime.container.reap_orphans`), the scratch overlays of
its containers' root filesystems, unmounted
(:meth:`~dockyard.runtime.snapshots.Snapshots.reap_scratch`), and the store's names of
the images it built (:mod:`.images`). Its network namespace and slirp4netns ended with
its process (:mod:`dockyard.runtime.nat`).

As for snapshots, the holds are read and what goes is moved to the trash under the
store's GC lock; the trash is emptied after it is released.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.ci.caches import CACHE_DIR
from dockyard.ci.images import run_of
from dockyard.ci.runs import ABANDONED, HOLDS_DIR, RUNS_DIR, RunDir, run_ids
from dockyard.errors import NotFound
from dockyard.runtime import mounts
from dockyard.runtime.container import reap_orphans
from dockyard.runtime.snapshots import Snapshots
from dockyard.store import Store, trash
from dockyard.store.holds import held_names

DEFAULT_KEEP = 10


@dataclass
class PruneResult:
    """What a prune deleted."""

    runs: list[str] = field(default_factory=list)  # run ids
    caches: list[str] = field(default_factory=list)  # cache dir names
    freed: int = 0  # bytes
    leftovers: int = 0  # containers and image names of killed runs


def prune(
    store: Store,
    *,
    keep: int = DEFAULT_KEEP,
    caches_unused_for: float | None = None,
    abandoned: bool = False,
) -> PruneResult:
    """Delete all runs but the newest ``keep``, and the caches unused for a while.

    Caches go only if ``caches_unused_for`` (seconds) is given: those unused for that long. Spare
    what runs in progress hold.

    ``abandoned``: also delete the runs whose process died, newest or not (an agent
    starting again: the server has their logs and artifacts, and runs them again)."""
    result = PruneResult()
    if not store.layout.exists():
        return result
    result.leftovers = len(reap_orphans(store.root))
    result.leftovers += Snapshots(store).reap_scratch()
    doomed: list[Path] = []
    with store.gc_lock():
        for directory in (RUNS_DIR, CACHE_DIR):  # what a killed prune left
            doomed += [
                Path(e.path) for e in _entries(store.root / directory) if trash.is_trash(e.name)
            ]
        held = held_names(store.root / HOLDS_DIR)
        result.leftovers += _forget_built_images(store, held)
        ids = run_ids(store.root)
        doomed_ids = set(ids[: max(0, len(ids) - keep)])
        if abandoned:
            doomed_ids.update(i for i in ids if _abandoned(store.root, i))
        for run_id in sorted(doomed_ids):
            if run_id not in held and (gone := _discard_run(store.root / RUNS_DIR / run_id)):
                doomed.append(gone)
                result.runs.append(run_id)
        if caches_unused_for is not None:
            cutoff = time.time() - caches_unused_for
            for entry in _entries(store.root / CACHE_DIR):
                name = entry.name
                if trash.is_trash(name) or name in held or entry.stat().st_mtime >= cutoff:
                    continue
                if gone := trash.move_to_trash(Path(entry.path)):
                    doomed.append(gone)
                    result.caches.append(name)
    for path in doomed:
        result.freed += trash.remove_tree(path)
    return result


def _forget_built_images(store: Store, held: set[str]) -> int:
    """Remove the store's names of images built by runs no process holds (ended
    runs remove their own): their blobs go at the next store prune."""
    removed = 0
    for image in store.images():
        run_id = run_of(image.ref)
        if run_id is not None and run_id not in held:
            with contextlib.suppress(NotFound):
                store.untag(image.ref)
                removed += 1
    return removed


def _abandoned(store_root: Path, run_id: str) -> bool:
    """Whether run ``run_id``'s process died before it ended."""
    return RunDir(store_root / RUNS_DIR / run_id).read_record()["status"] == ABANDONED


def _discard_run(path: Path) -> Path | None:
    """Move the run dir ``path`` to the trash, its leftover mounts detached first."""
    mounts.unmount_all(path)
    return trash.move_to_trash(path)


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(directory))
    except FileNotFoundError:
        return []
