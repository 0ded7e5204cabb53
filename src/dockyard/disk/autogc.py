"""Automatic GC for long-lived hosts (``dockyard agent``/``server --gc-keep-storage``).

After each pipeline run the host takes stock of its store; past the threshold it runs
the prune policy ``--keep-storage THRESHOLD`` (:mod:`.prune`): garbage first, then the
least recently used build cache, cache mounts and pipeline runs and caches, until the
store is under it -- as BuildKit's daemon runs its GC policy after builds. What runs
meanwhile is safe by the holds every prune respects. One collection at a time: a run
ending while another collects does not start a second.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from dockyard.disk.prune import PrunePolicy, PruneReport, prune_by_policy
from dockyard.disk.usage import take_stock
from dockyard.store import Store

log = logging.getLogger("dockyard.gc")


class AutoGC:
    """Keeps the store at ``store_root`` under ``keep_storage`` bytes, when asked to.

    ``store_root`` None is the default store; it is asked to by :meth:`after_run`."""

    def __init__(self, store_root: Path | None, keep_storage: int):
        self.store_root = store_root
        self.keep_storage = keep_storage
        self._running = threading.Lock()

    def after_run(self) -> PruneReport | None:
        """Prune if the store is past the threshold; return what went, or None if nothing ran.

        Nothing runs under the threshold, or while a collection is already running. Never raises: a
        failed GC is logged, and the host goes on taking runs."""
        if not self._running.acquire(blocking=False):
            return None
        try:
            store = Store(self.store_root)
            used = take_stock(store).total
            if used <= self.keep_storage:
                return None
            report = prune_by_policy(store, PrunePolicy(keep_storage=self.keep_storage))
            freed = sum(report.freed.values())
            log.info(
                "gc: the store took %d bytes, over %d: freed %d (%s)",
                used,
                self.keep_storage,
                freed,
                ", ".join(f"{kind} {n}" for kind, n in sorted(report.freed.items())) or "nothing",
            )
            return report
        except Exception:
            log.exception("gc failed")
            return None
        finally:
            self._running.release()
