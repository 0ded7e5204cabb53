"""Rewriting an image on its way to a destination: OCI media types, layer compression.

Docker media types become OCI ones, and layers are compressed, recompressed or
decompressed.

Other tools expect both. skopeo, podman, buildah and umoci open an OCI layout's image
by tag only when its index entry has an OCI media type, so writing a layout converts a
Docker schema 2 image (every image loaded from a docker-archive) to OCI, as ``skopeo
copy`` does: the config and layer bytes stay, the manifests are new documents. A
registry gets compressed layers, as podman and skopeo push them: plain-tar layers (a
docker-archive's) are gzipped on the way. ``--compression-format`` rewrites every
layer that is not in the format asked for. ``--preserve-digests`` keeps every byte as
it is, and fails when the destination cannot hold the image that way.

Compression is found by each blob's first bytes, not by its media type (docker-archive
layers are often gzip in a ``.tar``). A layer to rewrite goes through a temp file, as
its digest must be known before a registry accepts it; the output is deterministic
(no timestamps in the gzip header), so pushing the same image twice sends the same
blobs. A manifest with nothing to change keeps its bytes, and so its digest.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError
from dockyard.oci import digest as digests
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.digest import CHUNK
from dockyard.oci.streams import ReadCloser, Reader

COMPRESSION_FORMATS = ("gzip", "zstd", "none")

_TO_OCI = {
    mt.DOCKER_MANIFEST: mt.OCI_MANIFEST,
    mt.DOCKER_MANIFEST_LIST: mt.OCI_INDEX,
    mt.DOCKER_CONFIG: mt.OCI_CONFIG,
    mt.DOCKER_LAYER: mt.OCI_LAYER,
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
    mt.DOCKER_LAYER_FOREIGN_GZIP: mt.OCI_LAYER_NONDIST_GZIP,
}
_REWRITABLE_LAYERS = frozenset(
    {mt.OCI_LAYER, mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD, mt.DOCKER_LAYER, mt.DOCKER_LAYER_GZIP}
)


@dataclass(frozen=True)
class Conversion:
    """What a copy changes: media types, layer compression, or nothing.

    ``oci`` turns Docker media types into OCI's; ``compression`` (``gzip``, ``zstd`` or
    ``none``; None keeps each layer as it is) is the layer format wanted, for plain-tar
    layers only when ``only_uncompressed`` (a push's default).
    """

    oci: bool = False
    compression: str | None = None
    only_uncompressed: bool = False

    @property
    def changes_nothing(self) -> bool:
        return not self.oci and self.compression is None

    def touches(self, desc: Descriptor) -> bool:
        """Might the blob ``desc`` be rewritten?

        Layers whose media type says they are not in the wanted compression might (a
        plain-tar type may hide gzip: the bytes decide); configs and foreign layers
        never are.
        """
        if self.compression is None or desc.media_type not in _REWRITABLE_LAYERS or desc.urls:
            return False
        have = mt.layer_compression(desc.media_type)
        return have is None if self.only_uncompressed else have != _codec(self.compression)


def plan(
    transport: str, *, compression_format: str | None = None, preserve_digests: bool = False
) -> Conversion:
    """The conversion a copy to a destination of ``transport`` makes.

    ``transport`` is ``docker``, ``oci``, ``oci-archive``, ``docker-archive`` or
    ``local``. DockyardError when ``preserve_digests`` asks for what that destination
    cannot keep.
    """
    if preserve_digests:
        if compression_format is not None:
            raise DockyardError("--compression-format changes layer digests: drop one option")
        if transport == "docker-archive":
            raise DockyardError(
                "a docker-archive keeps no manifest and only uncompressed layers: "
                "digests cannot be preserved (use oci-archive)"
            )
        return Conversion()
    if transport == "docker-archive" and compression_format not in (None, "none"):
        raise DockyardError("a docker-archive holds uncompressed layers only")
    oci = transport in ("oci", "oci-archive")
    if compression_format is not None:
        return Conversion(oci, compression_format)
    if transport == "docker":
        return Conversion(oci, "gzip", only_uncompressed=True)
    return Conversion(oci)


@dataclass(frozen=True)
class Blob:
    """A layer as written: where its bytes are, its digest, size and real compression.

    ``path`` None: the source's bytes, unchanged; ``compression`` None: plain tar.
    """

    path: Path | None
    digest: str
    size: int
    compression: str | None


def _codec(name: str | None) -> str | None:
    return None if name in (None, "none") else name


def rewrite_layer(
    conversion: Conversion,
    opened: Callable[[], AbstractContextManager[ReadCloser]],
    desc: Descriptor,
    workdir: Path,
) -> Blob:
    """The layer ``desc`` as the conversion wants it: its own bytes or a recompressed copy.

    Its own bytes (``path`` None) when its first bytes show it already is in the wanted compression
    (or compressed at all, for ``only_uncompressed``), else a recompressed copy in ``workdir``, made
    from the source bytes verified to the end."""
    from dockyard.layers.compression import CompressingWriter, detect, open_decompressed

    wanted = _codec(conversion.compression)
    with opened() as peek:
        actual = detect(_read_head(peek))
    if actual == wanted or (conversion.only_uncompressed and actual is not None):
        return Blob(None, desc.digest, desc.size, actual)
    out = _HashingFile(workdir / desc.digest.replace(":", "-"))
    with opened() as raw, out, CompressingWriter(out, wanted) as writer:
        stream = digests.verified(raw, desc.digest, desc.size)
        with open_decompressed(stream) as tar:
            while chunk := tar.read(CHUNK):
                writer.write(chunk)
        while stream.read(CHUNK):  # a compressed stream may end before the blob: verify all
            pass
    return Blob(out.path, out.digest, out.size, wanted)


def _read_head(stream: Reader, size: int = 8) -> bytes:
    head = b""
    while len(head) < size and (more := stream.read(size - len(head))):
        head += more
    return head


class _HashingFile:
    """A new file that digests what is written to it."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "xb")  # noqa: SIM115 -- closed by __exit__
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self._file.write(data)

    @property
    def digest(self) -> str:
        return f"sha256:{self._hash.hexdigest()}"

    def __enter__(self) -> _HashingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


@contextmanager
def workspace() -> Iterator[Path]:
    """A private temp directory for rewritten layers, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="dockyard-convert-") as tmp:
        yield Path(tmp)


def rewrite_manifest(
    conversion: Conversion, manifest: manifests.Manifest, blobs: dict[str, Blob]
) -> tuple[bytes, str]:
    """``manifest`` rewritten: its bytes and media type.

    Its layers are as ``blobs`` has them, with OCI media types if asked (or needed:
    Docker has no zstd layer); its original bytes if nothing changed.
    """
    oci = conversion.oci or (
        mt.is_docker(manifest.media_type)
        and any(blobs[d.digest].compression == "zstd" for d in manifest.layers if d.digest in blobs)
    )
    docker = mt.is_docker(manifest.media_type) and not oci
    doc = json.loads(manifest.raw)
    media_type = _TO_OCI.get(manifest.media_type, manifest.media_type) if oci else None
    if media_type:
        doc["mediaType"] = media_type
    if oci:
        doc["config"]["mediaType"] = _TO_OCI.get(
            manifest.config.media_type, manifest.config.media_type
        )
    for entry, layer in zip(doc["layers"], manifest.layers, strict=True):
        blob = blobs.get(layer.digest)
        if blob is not None and layer.media_type in _REWRITABLE_LAYERS:
            entry.update(
                mediaType=mt.layer_media_type(blob.compression, docker=docker),
                digest=blob.digest,
                size=blob.size,
            )
        elif oci:
            entry["mediaType"] = _TO_OCI.get(layer.media_type, layer.media_type)
    return _unless_same(manifest.raw, doc), media_type or manifest.media_type


def rewrite_index(
    conversion: Conversion, index: manifests.Index, children: dict[str, Descriptor]
) -> tuple[bytes, str]:
    """``index`` rewritten to point at the rewritten ``children``: its bytes and media type.

    ``children`` maps an old digest to the new descriptor; the index becomes OCI if
    asked or if a child did.
    """
    oci = conversion.oci or any(
        not mt.is_docker(children[d.digest].media_type)
        for d in index.manifests
        if d.digest in children and mt.is_docker(d.media_type)
    )
    doc = json.loads(index.raw)
    if oci:
        doc["mediaType"] = _TO_OCI.get(index.media_type, index.media_type)
    for entry, child in zip(doc["manifests"], index.manifests, strict=True):
        new = children.get(child.digest)
        if new is not None:
            entry.update(mediaType=new.media_type, digest=new.digest, size=new.size)
    return _unless_same(index.raw, doc), doc.get("mediaType", index.media_type)


def _unless_same(raw: bytes, doc: dict[str, Any]) -> bytes:
    """The original bytes when ``doc`` says what they say (the digest stays)."""
    return raw if json.loads(raw) == doc else manifests.dumps(doc)
