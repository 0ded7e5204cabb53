"""The local image store: blobs by digest, names in an OCI ``index.json``, leases, GC."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard import lazy

if TYPE_CHECKING:
    from dockyard.store.gc import PruneResult
    from dockyard.store.store import ImageInfo, Store, as_store, default_root, ref_key

# Imported on first use: ``dockyard images`` should not load the collector with the store.
_WHERE = {
    "PruneResult": "gc",
    **dict.fromkeys(["ImageInfo", "Store", "as_store", "default_root", "ref_key"], "store"),
}

__all__ = ["ImageInfo", "PruneResult", "Store", "as_store", "default_root", "ref_key"]

__getattr__ = lazy.exports(__name__, _WHERE)
