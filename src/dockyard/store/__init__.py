"""The local image store: blobs by digest, names in an OCI ``index.json``, leases, GC."""

from dockyard.store.gc import PruneResult
from dockyard.store.store import ImageInfo, Store, as_store, default_root, ref_key

__all__ = ["ImageInfo", "PruneResult", "Store", "as_store", "default_root", "ref_key"]
