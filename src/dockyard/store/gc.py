"""Mark and sweep over an OCI layout: keep what ``index.json`` reaches, delete the rest.

Roots are every ``index.json`` entry; from a root the walk follows an index's children
and a manifest's config and layers. The caller must make sure no writer is between
writing blobs and naming them (the store's lease lock does).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.errors import DockyardError, StoreError
from dockyard.layout import atomic
from dockyard.layout.blobdir import STALE_TEMP_SECONDS
from dockyard.layout.oci_dir import OCILayout
from dockyard.oci import manifest as manifests
from dockyard.oci.descriptor import Descriptor


@dataclass
class PruneResult:
    """What a prune removed."""

    removed: list[str] = field(default_factory=list)
    freed: int = 0
    temps: int = 0


def reachable(layout: OCILayout) -> set[str]:
    """Digests of every blob a root reaches and the layout holds.

    Raise :class:`StoreError` if a stored manifest cannot be read: sweeping without
    knowing its children would delete them.
    """
    keep: set[str] = set()
    pending: list[Descriptor] = list(layout.index().manifests)
    while pending:
        desc = pending.pop()
        if desc.digest in keep or not layout.blobs.has(desc.digest):
            continue  # an index may name platforms that were never pulled
        keep.add(desc.digest)
        try:
            raw = layout.read_manifest(desc.digest, desc.size, desc.media_type)
            parsed = manifests.parse(raw.data, raw.media_type, f"manifest {desc.digest}")
        except DockyardError as e:
            raise StoreError(f"cannot prune {layout.root}: {e}") from None
        if isinstance(parsed, manifests.Index):
            pending.extend(parsed.manifests)
        else:
            keep.update(b.digest for b in parsed.blobs)
    return keep


def sweep(layout: OCILayout) -> PruneResult:
    """Delete unreachable blobs and the temp files of dead writers.

    No blob writer may be running (every temp file in the blob temp dir is deleted).
    """
    keep = reachable(layout)
    result = PruneResult()
    for digest in list(layout.blobs):
        if digest in keep:
            continue
        try:
            size = layout.blobs.path(digest).stat().st_size
        except FileNotFoundError:
            continue
        if layout.blobs.delete(digest):
            result.removed.append(digest)
            result.freed += size
    result.temps = layout.blobs.remove_stale_temps(0)
    # index.json is rewritten without a lease: only a temp a killed writer left is old.
    result.temps += atomic.remove_stale_temps(layout.root, STALE_TEMP_SECONDS)
    return result
