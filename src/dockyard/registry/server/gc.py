"""Mark and sweep: delete blobs no manifest of any repository refers to.

Safe while the server runs: gc holds the registry's gc lock exclusively (``gc.lock`` on
the filesystem, a lock object in the bucket on S3), and every manifest write holds it
shared, so no manifest can appear between mark and sweep. A blob uploaded for a manifest
that is not pushed yet, or one a client just checked (``HEAD``) or mounted, was touched
(a fresh mtime; a touch marker on S3) and survives the grace period. Uploads in progress
live outside the blobs and are only removed once untouched for ``upload_max_age``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dockyard.errors import DockyardError
from dockyard.registry.server.backend import RegistryStorage
from dockyard.registry.server.config import DEFAULT_GC_GRACE, DEFAULT_UPLOAD_MAX_AGE
from dockyard.registry.server.manifeststore import iter_manifest_blobs

log = logging.getLogger("dockyard.registry.server")


@dataclass
class GCResult:
    removed: list[str] = field(default_factory=list)  # blob digests
    freed: int = 0  # bytes
    kept_young: list[str] = field(default_factory=list)  # unreferenced, within grace
    marked: int = 0
    uploads_removed: list[str] = field(default_factory=list)
    links_removed: int = 0
    temps_removed: int = 0
    dry_run: bool = False


def collect(
    storage: RegistryStorage,
    *,
    grace: float = DEFAULT_GC_GRACE,
    upload_max_age: float = DEFAULT_UPLOAD_MAX_AGE,
    dry_run: bool = False,
    report: Callable[[str], None] | None = None,
) -> GCResult:
    """Run one collection; with ``dry_run`` only say what would go."""
    say = report or (lambda _msg: None)
    result = GCResult(dry_run=dry_run)
    if not storage.present():
        raise DockyardError(f"{storage.where}: no registry here")
    storage.ensure()
    with storage.gc_lock(shared=False):
        marked: set[str] = set()
        for name in storage.repositories():
            for digest in storage.revisions(name):
                if not storage.blobs.has(digest):
                    continue
                marked.add(digest)
                media_type = storage.manifest_media_type(name, digest)
                try:
                    raw = storage.blobs.read_bytes(digest)
                    marked.update(iter_manifest_blobs(raw, media_type))
                except DockyardError as e:  # not an image manifest: keeps only itself
                    log.debug("gc: %s@%s: %s", name, digest, e)
        result.marked = len(marked)

        for digest in list(storage.blobs):
            if digest in marked:
                continue
            age, size = storage.blob_age(digest), storage.blob_size(digest)
            if age is None or size is None:
                continue
            if age < grace:
                result.kept_young.append(digest)
                continue
            say(f"{'would delete' if dry_run else 'deleting'} blob {digest} ({size} bytes)")
            # checked again at the last moment: a HEAD or a mount may just have touched it
            if dry_run or storage.delete_blob_if_idle(digest, grace):
                result.removed.append(digest)
                result.freed += size
            else:
                result.kept_young.append(digest)

        if not dry_run:
            kept = marked.union(result.kept_young)  # blobs still there: no need to look
            for name in storage.repositories():
                for digest in storage.linked_blobs(name):
                    if digest not in kept and not storage.blobs.has(digest):
                        storage.unlink_blob(name, digest)
                        result.links_removed += 1

    now = time.time()
    for upload in storage.uploads.ids():
        if now - storage.uploads.last_activity(upload) > upload_max_age:
            result.uploads_removed.append(upload)
            say(f"{'would delete' if dry_run else 'deleting'} abandoned upload {upload}")
            if not dry_run:
                storage.uploads.cancel(upload)
    if not dry_run:
        result.temps_removed = storage.remove_stale(upload_max_age)
    return result
