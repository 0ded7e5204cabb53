"""Small in-memory images and a hand-written copy loop, shared by the layout and store tests.

The copy loop uses only the ImageSource/ImageDestination methods, so these tests do not
depend on ``transfer.copy``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field

import zstandard

from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.home import ImageDestination, ImageSource, RawManifest


def layer_tar(files: dict[str, bytes]) -> bytes:
    """A deterministic uncompressed layer holding ``files``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def compress(data: bytes, compression: str | None) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


@dataclass
class SampleImage:
    """An image held in memory; an ImageSource whose blobs are *not* verified on read,
    so a destination's own verification is what a test exercises."""

    doc: manifests.Manifest
    tars: list[bytes]
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def diff_ids(self) -> list[str]:
        return ["sha256:" + hashlib.sha256(t).hexdigest() for t in self.tars]

    def root_manifest(self) -> RawManifest:
        return RawManifest(self.doc.raw, self.doc.media_type)

    def manifest(self, digest: str) -> RawManifest:
        assert digest == self.doc.digest
        return self.root_manifest()

    def open_blob(self, desc: Descriptor) -> io.BytesIO:
        return io.BytesIO(self.blobs[desc.digest])


def sample_image(
    *layers: dict[str, bytes],
    compression: str | None = "gzip",
    docker: bool = False,
    created: str = "2024-01-02T03:04:05Z",
) -> SampleImage:
    """An image with one layer per ``layers`` dict (default: one small layer)."""
    layers = layers or ({"hello.txt": b"hello\n"},)
    tars = [layer_tar(files) for files in layers]
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars],
        },
    }
    config_bytes = json.dumps(config).encode()
    blobs = {}
    config_desc = Descriptor.of_bytes(mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG, config_bytes)
    blobs[config_desc.digest] = config_bytes
    layer_descs = []
    for t in tars:
        data = compress(t, compression)
        desc = Descriptor.of_bytes(mt.layer_media_type(compression, docker=docker), data)
        blobs[desc.digest] = data
        layer_descs.append(desc)
    built = manifests.build_manifest(
        config_desc, layer_descs, media_type=mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
    )
    return SampleImage(built, tars, blobs)


def put_indexed(
    image: SampleImage, destination: ImageDestination, children: list[Descriptor]
) -> manifests.Index:
    """Write ``image`` under an index of ``children`` (its own descriptor among them, as
    the caller places it), the index as the root; return the index."""
    index = manifests.build_index(children)
    for desc in image.doc.blobs:
        destination.put_blob(desc, image.open_blob(desc))
    destination.put_manifest(image.root_manifest(), root=False)
    destination.put_manifest(RawManifest(index.raw, index.media_type), root=True)
    destination.commit()
    return index


def copy_by_hand(source: ImageSource, destination: ImageDestination) -> manifests.Manifest:
    """Copy a single-manifest image with the interface methods alone; return the manifest."""
    root = source.root_manifest()
    parsed = manifests.parse(root.data, root.media_type)
    assert isinstance(parsed, manifests.Manifest)
    for desc in parsed.blobs:
        if not destination.has_blob(desc):
            with source.open_blob(desc) as stream:
                destination.put_blob(desc, stream)
    destination.put_manifest(root, root=True)
    destination.commit()
    return parsed
