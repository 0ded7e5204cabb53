"""From a source's root manifest to the single-platform image manifest a command needs."""

from __future__ import annotations

from dockyard.errors import DigestError, ManifestError
from dockyard.oci import digest as digests
from dockyard.oci import manifest as manifests
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.oci.home import ImageSource, RawManifest


def fetch_child(
    source: ImageSource, desc: Descriptor
) -> tuple[RawManifest, manifests.Manifest | manifests.Index]:
    """Fetch and verify an index entry's manifest."""
    raw = source.manifest(desc.digest)
    actual = digests.of_bytes(raw.data)
    if actual != desc.digest:
        raise DigestError(f"manifest {desc.digest}: content has digest {actual}")
    return raw, manifests.parse(raw.data, raw.media_type or desc.media_type, where=desc.digest)


def resolve_image(
    source: ImageSource, root: RawManifest | None = None, platform: Platform | None = None
) -> manifests.Manifest:
    """The image manifest for ``platform`` (default: the host's) under ``root``."""
    root = root or source.root_manifest()
    parsed = manifests.parse(root.data, root.media_type)
    while isinstance(parsed, manifests.Index):
        _, parsed = fetch_child(source, parsed.select(platform or Platform.host()))
    if not isinstance(parsed, manifests.Manifest):
        raise ManifestError(f"{parsed.digest}: not an image manifest")
    return parsed
