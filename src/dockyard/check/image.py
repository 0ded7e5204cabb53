"""An image opened for reading its layers in place.

From the store, a registry (``docker://REF``: layers stream from the registry, nothing is pulled),
or any other transport. Each layer comes with the history entry that made it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dockyard.oci import manifest as manifests
from dockyard.oci.config import ImageConfig
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.oci.home import ImageSource

MAX_CONFIG_SIZE = 16 << 20


@dataclass(frozen=True)
class Layer:
    """One layer: 1-based ``number`` from the bottom, its blob, what made it."""

    number: int
    descriptor: Descriptor
    diff_id: str | None
    created_by: str

    @property
    def label(self) -> str:
        """``layer 3 (sha256:0123456789ab)``: how findings and reports name it."""
        return f"layer {self.number} ({self.descriptor.digest[:19]})"


@dataclass
class OpenedImage:
    """An image's manifest, config and layers, and the source its blobs stream from."""

    name: str
    source: ImageSource
    manifest: manifests.Manifest
    config: ImageConfig
    layers: list[Layer]


def open_image(
    text: str,
    *,
    store_root: Path | None,
    tls_verify: bool | None = None,
    platform: Platform | None = None,
) -> OpenedImage:
    """Open the image ``text`` names (a store reference or any transport string)."""
    from dockyard.transfer.transports import open_source, parse_location

    location = parse_location(text)
    source = open_source(location, store_root=store_root, tls_verify=tls_verify)
    return open_source_image(text, source, platform)


def open_source_image(
    text: str, source: ImageSource, platform: Platform | None = None
) -> OpenedImage:
    """Open the image of an opened ``source``; ``text`` names it in findings."""
    from dockyard.errors import ManifestError
    from dockyard.transfer.resolve import resolve_image

    manifest = resolve_image(source, None, platform)
    if manifest.config.size > MAX_CONFIG_SIZE:
        raise ManifestError(f"{text}: config of {manifest.config.size} bytes is too big")
    with source.open_blob(manifest.config) as stream:
        config = ImageConfig(
            manifests.parse_config(stream.read(), f"config {manifest.config.digest}")
        )
    return OpenedImage(text, source, manifest, config, _layers(manifest, config))


def _layers(manifest: manifests.Manifest, config: ImageConfig) -> list[Layer]:
    diff_ids = config.diff_ids
    made = [h.created_by for h in config.history if not h.empty_layer]
    if len(made) != len(manifest.layers):
        made = []  # a history that does not line up tells nothing reliable
    layers = []
    for i, desc in enumerate(manifest.layers):
        diff_id = diff_ids[i] if i < len(diff_ids) else None
        layers.append(Layer(i + 1, desc, diff_id, made[i] if made else ""))
    return layers
