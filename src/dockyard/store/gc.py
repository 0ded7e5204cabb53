"""Mark and sweep over an OCI layout: keep what ``index.json`` reaches, delete the rest.

Roots are every ``index.json`` entry; from a root the walk follows an index's children
and a manifest's config and layers. The caller must make sure no writer is between
writing blobs and naming them (the store's lease lock does).
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import DockyardError, StoreError
from dockyard.files import atomic
from dockyard.files.blobdir import STALE_TEMP_SECONDS
from dockyard.layout.oci_dir import OCILayout
from dockyard.oci import manifest as manifests
from dockyard.oci.descriptor import Descriptor
from dockyard.store import trash


@dataclass
class PruneResult:
    """What a prune removed.

    Blobs or snapshots by digest, bytes, leftovers of dead processes (temp files and dirs)."""

    removed: list[str] = field(default_factory=list)
    freed: int = 0
    temps: int = 0


def reachable(layout: OCILayout) -> set[str]:
    """Digests of every blob a root reaches (its manifests and indexes as far as they are stored).

    Raise :class:`StoreError` if a stored manifest cannot be read: sweeping without
    knowing its children would delete them.
    """
    return _reached(layout, layout.index().manifests)


def blobs_per_root(layout: OCILayout) -> list[set[str]]:
    """For each ``index.json`` entry (a named image), the digests of the stored blobs it reaches.

    What ``dockyard df`` counts as that image's, and shared when two have it."""
    return [
        {digest for digest in _reached(layout, [root]) if layout.blobs.has(digest)}
        for root in layout.index().manifests
    ]


def _reached(layout: OCILayout, roots: Sequence[Descriptor]) -> set[str]:
    """Digests of the stored manifests and indexes ``roots`` reach, and of the configs
    and layers these name."""
    reached: set[str] = set()
    for desc, parsed in _walk(layout, roots):
        reached.add(desc.digest)
        if isinstance(parsed, manifests.Manifest):
            reached.update(b.digest for b in parsed.blobs)
    return reached


def image_configs(layout: OCILayout) -> list[Descriptor]:
    """The config of every image manifest a root reaches (each platform of an index)."""
    return [m.config for _, m in _walk(layout) if isinstance(m, manifests.Manifest)]


def _walk(
    layout: OCILayout, roots: Sequence[Descriptor] | None = None
) -> Iterator[tuple[Descriptor, manifests.Manifest | manifests.Index]]:
    """Every stored manifest and index the roots (default: all of ``index.json``)
    reach, once each, parsed."""
    seen: set[str] = set()
    pending: list[Descriptor] = list(layout.index().manifests if roots is None else roots)
    while pending:
        desc = pending.pop()
        if desc.digest in seen or not layout.blobs.has(desc.digest):
            continue  # an index may name platforms that were never pulled
        seen.add(desc.digest)
        try:
            raw = layout.read_manifest(desc.digest, desc.size, desc.media_type)
            parsed = manifests.parse(raw.data, raw.media_type, f"manifest {desc.digest}")
        except DockyardError as e:
            raise StoreError(f"cannot prune {layout.root}: {e}") from None
        if isinstance(parsed, manifests.Index):
            pending.extend(parsed.manifests)
        yield desc, parsed


def sweep(
    layout: OCILayout, held: Collection[str] = (), only: Collection[str] | None = None
) -> PruneResult:
    """Delete blobs neither reachable nor ``held``, and the temp files of dead writers.

    Held by live processes (see :meth:`.Store.blob_hold`), or kept by a prune policy. With ``only``,
    delete none but those.

    No blob writer may be running (every temp file in the blob temp dir is deleted).
    """
    keep = reachable(layout) | set(held)
    result = PruneResult()
    for digest in list(layout.blobs) if only is None else [d for d in only if layout.blobs.has(d)]:
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


def remove_stale_dirs(directory: Path, older_than: float) -> PruneResult:
    """Delete the subdirectories of ``directory`` unchanged for ``older_than`` seconds.

    Work dirs a killed process left in a shared temp dir (the builder's secret and script dirs in
    the store's ``tmp/``). Each counts as one temp."""
    result = PruneResult()
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return result
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False) and entry.stat().st_mtime <= cutoff:
                result.freed += trash.remove_tree(Path(entry.path))
                result.temps += 1
        except FileNotFoundError:
            continue
    return result
