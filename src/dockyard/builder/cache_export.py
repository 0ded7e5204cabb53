"""``--cache-to`` / ``--cache-from``: the build cache as an image in a registry or a layout.

The image is in a registry or an OCI layout directory, so a fresh CI runner with an empty store gets
cache hits.

The cache image is an OCI manifest whose layers are the cached layers and whose config
is the table of cache records (key -> layer). Exporting pushes only blobs the
destination lacks; importing reads only the table, and a layer blob is fetched when a
hit needs it.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, BinaryIO

from dockyard.builder.cache import BuildCache, CacheRecord
from dockyard.errors import DockyardError, ManifestError
from dockyard.oci import manifest as manifests
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.home import ImageDestination, ImageSource, RawManifest
from dockyard.store import Store

if TYPE_CHECKING:
    from dockyard.transfer.transports import Location

CONFIG_MEDIA_TYPE = "application/vnd.dockyard.buildcache.config.v1+json"
LOCAL_TAG = "buildcache"


def _location(spec: str) -> Location:
    """``REF``, ``oci:DIR[:TAG]``, ``type=registry,ref=REF`` or ``type=local,dest=DIR``
    (``src=`` too); an OCI layout's image is tagged ``buildcache`` unless named."""
    from dockyard.transfer.transports import LayoutLocation, parse_location

    if spec.startswith("oci:"):
        location = parse_location(spec)
        assert isinstance(location, LayoutLocation)  # the oci: prefix parses to nothing else
        return replace(location, name=location.name or LOCAL_TAG)
    if "=" not in spec.split(",", 1)[0]:
        return parse_location(f"docker://{spec}")
    fields = dict(item.split("=", 1) for item in spec.split(",") if "=" in item)
    kind = fields.get("type", "registry")
    if kind == "registry" and "ref" in fields:
        return parse_location(f"docker://{fields['ref']}")
    if kind == "local" and ("dest" in fields or "src" in fields):
        return parse_location(f"oci:{fields.get('dest') or fields['src']}:{LOCAL_TAG}")
    raise DockyardError(
        f"invalid cache location {spec!r}: expected REF, oci:DIR, type=registry,ref=REF "
        "or type=local,dest=DIR"
    )


def check_location(spec: str, *, registry_only: bool = False) -> None:
    """DockyardError now if ``spec`` is no cache location.

    A build checks ``--cache-to`` before its first step, not after its last. ``registry_only``: a
    local directory is refused too (a pipeline names no host path)."""
    location = _location(spec)
    if registry_only and location.transport != "docker":
        raise DockyardError(f"cache location {spec!r}: a pipeline may only name a registry")


class _StoreBlobs:
    """An image source over blobs already in the store (the cache image we assemble)."""

    def __init__(self, store: Store, root: RawManifest):
        self._store = store
        self._root = root

    def root_manifest(self) -> RawManifest:
        return self._root

    def manifest(self, digest: str) -> RawManifest:
        raise ManifestError(f"cache image has no child manifest {digest}")

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[BinaryIO]:
        return self._store.blobs.open(desc.digest, desc.size)  # type: ignore[return-value]


def export_cache(store: Store, records: dict[str, CacheRecord], spec: str, log) -> None:
    """Write the records this build used, and their layers, as the cache image ``spec``."""
    from dockyard.transfer.copy import copy_image
    from dockyard.transfer.transports import open_destination

    table = {key: record.to_dict() for key, record in sorted(records.items())}
    layers: dict[str, Descriptor] = {}
    for record in records.values():
        if record.layer is not None and store.blobs.has(record.layer.digest):
            layers.setdefault(record.layer.digest, record.layer)
    config = manifests.dumps({"records": table})
    store.blobs.write_bytes(config)
    manifest = manifests.build_manifest(
        Descriptor.of_bytes(CONFIG_MEDIA_TYPE, config), list(layers.values())
    )
    location = _location(spec)
    destination: ImageDestination = open_destination(location, store_root=store.root)
    result = copy_image(
        _StoreBlobs(store, RawManifest(manifest.raw, manifest.media_type)), destination
    )
    log(
        f"cache exported to {location}: {len(table)} records, "
        f"{len(result.copied)} blobs sent, {len(result.skipped)} already there"
    )


def _open(spec: str) -> ImageSource:
    from dockyard.transfer.transports import open_source

    return open_source(_location(spec), store_root=None)


def import_cache(cache: BuildCache, spec: str, log) -> None:
    """Add the records of the cache image ``spec``; a missing cache is only a warning."""
    try:
        source = _open(spec)
        root = source.root_manifest()
        parsed = manifests.parse(root.data, root.media_type)
        if (
            not isinstance(parsed, manifests.Manifest)
            or parsed.config.media_type != CONFIG_MEDIA_TYPE
        ):
            raise ManifestError(f"{spec} is not a dockyard build cache")
        with source.open_blob(parsed.config) as stream:
            table = json.loads(stream.read())["records"]
        records = {key: CacheRecord.from_dict(key, doc) for key, doc in table.items()}
    except (DockyardError, ValueError, KeyError, TypeError) as e:
        log(f"warning: cannot import cache from {spec}: {e}")
        return
    cache.add_imported(records, spec)
    log(f"cache imported from {spec}: {len(records)} records")


def fetch_blob(store: Store, spec: str, desc: Descriptor) -> None:
    """Bring one cached layer from the cache image ``spec`` into the store."""
    with _open(spec).open_blob(desc) as stream:
        store.blobs.write(desc.digest, stream, desc.size)
