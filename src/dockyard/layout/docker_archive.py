"""docker-archive: the ``docker save`` / ``docker load`` tar format, read and written.

The archive's ``manifest.json`` lists images as ``{"Config", "RepoTags", "Layers"}``
with member paths: ``<hex>.json`` / ``<hex>.tar`` (skopeo, podman), ``<id>/layer.tar``
(docker before 25, duplicates as symlinks) or ``blobs/sha256/<hex>`` (docker 25+, which
also embeds an OCI layout; ``manifest.json`` still describes every image). Layers are
normally plain tar, but gzip and zstd members occur; they are told apart by magic bytes.

Reading builds a Docker schema 2 manifest in memory (an OCI one if a layer is zstd, which
schema 2 cannot name) whose layer descriptors are the archive members as they are, so the
rest of dockyard sees an ordinary image. Its digest is new: the archive keeps no manifest.

Writing stores layers uncompressed, as ``docker load`` requires (a layer's digest is its
config ``diff_id``): compressed blobs are decompressed into an unnamed spool file first,
because their decompressed size, which the tar header needs, is unknown until then.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from dockyard import reference
from dockyard.errors import InvalidReference, LayerError, ManifestError, NotFound, StoreError
from dockyard.files.tarreader import TarReader
from dockyard.files.tarwriter import TarWriter
from dockyard.layers import compression
from dockyard.layers.limits import LayerTooLarge, Limits, Meter, MeteredReader
from dockyard.oci import digest as digests
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.config import ImageConfig
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.digest import CHUNK, VerifyingReader
from dockyard.oci.home import BlobOpener, RawManifest
from dockyard.oci.streams import ReadCloser
from dockyard.reference import Reference

MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
MAX_CONFIG_SIZE = 16 << 20
_BLOB_MEMBER_RE = re.compile(r"^blobs/(sha256)/([a-f0-9]{64})$")


@dataclass(frozen=True)
class ArchiveImage:
    """One image listed in a docker-archive's ``manifest.json``: member paths and tags."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


def read_images(archive: TarReader) -> list[ArchiveImage]:
    """The images ``manifest.json`` lists, in order; raise naming the archive if malformed."""
    if not archive.has(MANIFEST_FILE):
        raise NotFound(f"{archive.path} is not a docker-archive (no {MANIFEST_FILE})")
    doc = archive.read_json(MANIFEST_FILE)
    where = f"{archive.path}: {MANIFEST_FILE}"
    if not isinstance(doc, list):
        raise ManifestError(f"{where}: expected a list of images")
    images = []
    for i, item in enumerate(doc):
        try:
            config, tags, layers = item["Config"], item.get("RepoTags") or [], item["Layers"]
        except (KeyError, TypeError):
            raise ManifestError(f"{where}: image {i} lacks Config or Layers") from None
        if not isinstance(config, str) or not all(isinstance(x, str) for x in [*tags, *layers]):
            raise ManifestError(f"{where}: image {i}: paths and tags must be strings")
        images.append(ArchiveImage(config, tuple(tags), tuple(layers)))
    return images


def list_images(path: Path) -> list[ArchiveImage]:
    """The images in the docker-archive at ``path`` (open one with ``@<index>``)."""
    with TarReader(path) as archive:
        return read_images(archive)


def select_image(images: list[ArchiveImage], name: str | None, where: str) -> ArchiveImage:
    """The image tagged ``name``, or number N for ``@N``; with no name, the only image."""
    if name is None:
        if len(images) != 1:
            tags = ", ".join(t for image in images for t in image.repo_tags)
            raise NotFound(f"{where} holds {len(images)} images: name one ({tags or '@N'})")
        return images[0]
    if name.startswith("@"):
        try:
            return images[int(name[1:])]
        except (ValueError, IndexError):
            raise NotFound(f"no image {name} in {where} (it holds {len(images)})") from None
    wanted = str(reference.parse(name))
    for image in images:
        for tag in image.repo_tags:
            try:
                if str(reference.parse(tag)) == wanted:
                    return image
            except InvalidReference:
                continue
    raise NotFound(f"no image tagged {name} in {where}")


class DockerArchiveSource:
    """Read one image (``name``: a RepoTag or ``@N``) from the docker-archive at ``path``."""

    def __init__(self, path: Path, name: str | None = None):
        self.archive = TarReader(path)
        try:
            self.image = select_image(read_images(self.archive), name, str(path))
            self._members: dict[str, str] = {}
            self._manifest = self._build_manifest()
        except BaseException:
            self.archive.close()
            raise

    @property
    def repo_tags(self) -> tuple[str, ...]:
        return self.image.repo_tags

    def root_manifest(self) -> RawManifest:
        return RawManifest(self._manifest.raw, self._manifest.media_type)

    def manifest(self, digest: str) -> RawManifest:
        if digest != self._manifest.digest:
            raise NotFound(f"no manifest {digest} in {self.archive.path}")
        return self.root_manifest()

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[ReadCloser]:
        member = self._members.get(desc.digest)
        if member is None:
            raise NotFound(f"no blob {desc.digest} in {self.archive.path}")
        return VerifyingReader(self.archive.open(member), desc.digest, desc.size)

    def close(self) -> None:
        self.archive.close()

    def _build_manifest(self) -> manifests.Manifest:
        where = f"{self.archive.path}: {self.image.config}"
        if self.archive.size(self.image.config) > MAX_CONFIG_SIZE:
            raise ManifestError(f"{where}: too big for an image config")
        with self.archive.open(self.image.config) as f:
            config_bytes = f.read()
        diff_ids = ImageConfig(manifests.parse_config(config_bytes, where)).diff_ids
        if len(diff_ids) != len(self.image.layers):
            raise ManifestError(
                f"{where}: {len(diff_ids)} diff_ids for {len(self.image.layers)} layers"
            )
        layers = [
            self._layer(member, diff_id)
            for member, diff_id in zip(self.image.layers, diff_ids, strict=True)
        ]
        docker = all(kind != compression.ZSTD for kind, _ in layers)
        config = Descriptor.of_bytes(mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG, config_bytes)
        self._members[config.digest] = self.image.config
        descs = [
            Descriptor(mt.layer_media_type(kind, docker=docker), digest, size)
            for kind, (digest, size) in layers
        ]
        media_type = mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
        return manifests.build_manifest(config, descs, media_type=media_type)

    def _layer(self, member: str, diff_id: str) -> tuple[str | None, tuple[str, int]]:
        """``(compression, (digest, size))`` of a layer member.

        The digest comes from a ``blobs/<alg>/<hex>`` name, else is the ``diff_id`` for a
        plain tar, else is computed; each is verified again whenever the blob is read.
        """
        size = self.archive.size(member)
        with self.archive.open(member) as f:
            try:
                kind = compression.detect(f.read(8))
            except LayerError as e:
                raise LayerError(f"{self.archive.path}: {member}: {e}") from None
        if match := _BLOB_MEMBER_RE.match(member):
            digest = f"{match[1]}:{match[2]}"
        elif kind is None:
            digest = diff_id
        else:
            h = hashlib.sha256()
            with self.archive.open(member) as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
            digest = f"sha256:{h.hexdigest()}"
        self._members[digest] = member
        return kind, (digest, size)


class DockerArchiveWriter:
    """A docker-archive being written to ``path``, one image per :meth:`destination`.

    Blobs are shared: a layer two images have is stored once.
    """

    def __init__(self, path: Path):
        self.tar = TarWriter(path)
        self._lock = threading.Lock()
        self._diff_ids: dict[str, str] = {}  # layer blob digest -> diff_id
        self._configs: dict[str, bytes] = {}
        self._images: list[dict[str, Any]] = []

    def destination(self, ref: Reference | str | None) -> DockerArchiveImage:
        """A destination for one image, listed under ``ref``'s tag (untagged if None)."""
        if isinstance(ref, str):
            ref = reference.parse(ref)
        return DockerArchiveImage(self, ref)

    def has_blob(self, desc: Descriptor) -> bool:
        with self._lock:
            return desc.digest in self._diff_ids or desc.digest in self._configs

    def put_blob(
        self, desc: Descriptor, stream: ReadCloser, *, reopen: BlobOpener | None = None
    ) -> None:
        """Store a config as ``<hex>.json`` and a layer uncompressed as ``<diff_id hex>.tar``."""
        reader = digests.verified(stream, desc.digest, desc.size)
        if desc.media_type not in mt.LAYERS:
            self._put_config(desc, reader)
        elif mt.layer_compression(desc.media_type) is None:
            self.tar.add(f"{digests.hex_part(desc.digest)}.tar", reader, desc.size)
            self._record_layer(desc.digest, desc.digest)
        else:
            self._put_compressed_layer(desc, reader)

    def add_image(self, ref: Reference | None, manifest: manifests.Manifest) -> None:
        """List an image whose blobs are all stored; check its layers match its diff_ids."""
        where = f"image {ref or manifest.digest}"
        with self._lock:
            config = self._configs.get(manifest.config.digest)
            layer_ids = [self._diff_ids.get(layer.digest) for layer in manifest.layers]
        if config is None or None in layer_ids:
            raise StoreError(f"{where}: not all blobs were written to {self.tar.path}")
        diff_ids = ImageConfig(manifests.parse_config(config, f"{where}: config")).diff_ids
        if list(diff_ids) != layer_ids:
            raise ManifestError(f"{where}: uncompressed layers do not match the config diff_ids")
        tags = [f"{ref.name}:{ref.tag}"] if ref and ref.tag else []
        entry = {
            "Config": f"{digests.hex_part(manifest.config.digest)}.json",
            "RepoTags": tags,
            "Layers": [f"{digests.hex_part(d)}.tar" for d in diff_ids],
        }
        with self._lock:
            for image in self._images:
                if (image["Config"], image["Layers"]) == (entry["Config"], entry["Layers"]):
                    image["RepoTags"] += [t for t in tags if t not in image["RepoTags"]]
                    return
            self._images.append(entry)

    def commit(self) -> None:
        """Write ``manifest.json`` and ``repositories`` and publish the archive."""
        if not self._images:
            self.tar.abort()
            raise StoreError(f"nothing to write to {self.tar.path}: no image was committed")
        repositories: dict[str, dict[str, str]] = {}
        for image in self._images:
            top = image["Layers"][-1].removesuffix(".tar") if image["Layers"] else ""
            for tag in image["RepoTags"]:
                name, _, tag_part = tag.rpartition(":")
                repositories.setdefault(name, {})[tag_part] = top
        self.tar.add_bytes(MANIFEST_FILE, json.dumps(self._images).encode())
        self.tar.add_bytes(REPOSITORIES_FILE, json.dumps(repositories).encode())
        self.tar.commit()

    def abort(self) -> None:
        self.tar.abort()

    def __enter__(self) -> DockerArchiveWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()

    def _put_config(self, desc: Descriptor, reader: ReadCloser) -> None:
        if desc.size > MAX_CONFIG_SIZE:
            raise ManifestError(f"config {desc.digest}: {desc.size} bytes is too big")
        data = b"".join(iter(lambda: reader.read(CHUNK), b""))  # EOF verifies
        self.tar.add_bytes(f"{digests.hex_part(desc.digest)}.json", data)
        with self._lock:
            self._configs[desc.digest] = data

    def _put_compressed_layer(self, desc: Descriptor, reader: ReadCloser) -> None:
        with tempfile.TemporaryFile(dir=self.tar.path.parent) as spool:
            h = hashlib.sha256()
            # stored uncompressed: a decompression bomb stops at the layer size limit
            meter = Meter(Limits.from_env())
            with compression.open_decompressed(reader) as decompressed:
                tar_stream = MeteredReader(decompressed, meter)
                try:
                    while chunk := tar_stream.read(CHUNK):
                        h.update(chunk)
                        spool.write(chunk)
                except LayerTooLarge as e:
                    raise LayerTooLarge(f"layer {desc.digest}: {e}") from None
            while reader.read(CHUNK):  # trailing bytes count too; EOF verifies
                pass
            diff_id = f"sha256:{h.hexdigest()}"
            size = spool.tell()
            spool.seek(0)
            self.tar.add(f"{h.hexdigest()}.tar", VerifyingReader(spool, diff_id, size), size)
        self._record_layer(desc.digest, diff_id)

    def _record_layer(self, digest: str, diff_id: str) -> None:
        with self._lock:
            self._diff_ids[digest] = diff_id


class DockerArchiveImage:
    """One image of a :class:`DockerArchiveWriter`; ``commit`` lists it in the archive."""

    def __init__(self, writer: DockerArchiveWriter, ref: Reference | None):
        self._writer = writer
        self._ref = ref
        self._manifest: manifests.Manifest | None = None

    def has_blob(self, desc: Descriptor) -> bool:
        return self._writer.has_blob(desc)

    def put_blob(
        self, desc: Descriptor, stream: ReadCloser, *, reopen: BlobOpener | None = None
    ) -> None:
        self._writer.put_blob(desc, stream)

    def put_manifest(self, manifest: RawManifest, *, root: bool) -> None:
        parsed = manifests.parse(manifest.data, manifest.media_type)
        if not isinstance(parsed, manifests.Manifest):
            raise ManifestError(
                f"{self._ref or parsed.digest}: a docker-archive holds single-platform images, "
                "not an index: choose a platform"
            )
        if root:
            self._manifest = parsed

    def commit(self) -> None:
        if self._manifest is None:
            raise StoreError(f"nothing to commit to {self._writer.tar.path}: no root manifest")
        self._writer.add_image(self._ref, self._manifest)

    def abort(self) -> None:
        """Nothing to undo for one image: the writer's owner aborts the archive."""


class DockerArchiveDestination(DockerArchiveImage):
    """Write one image as the docker-archive ``path``; the file appears at :meth:`commit`."""

    def __init__(self, path: Path, ref: Reference | str | None = None):
        writer = DockerArchiveWriter(path)
        super().__init__(writer, reference.parse(ref) if isinstance(ref, str) else ref)

    def commit(self) -> None:
        super().commit()
        self._writer.commit()

    def abort(self) -> None:
        """Discard the unfinished archive (call it when the copy fails)."""
        self._writer.abort()

    def __enter__(self) -> DockerArchiveDestination:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()
