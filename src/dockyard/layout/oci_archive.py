"""oci-archive: an OCI image layout packed in one uncompressed tar file.

Reading never extracts: members stream straight out of the archive. Writing streams
each blob straight into the archive as it arrives (blobs of several threads take turns
under a lock), verifying it on the way; ``index.json`` and ``oci-layout`` are written
last, by :meth:`OCIArchiveWriter.commit`, which is also when the file appears.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType

from dockyard.errors import ManifestError, NotFound, StoreError
from dockyard.files.tarreader import TarReader
from dockyard.files.tarwriter import TarWriter
from dockyard.layout.oci_dir import (
    INDEX_FILE,
    LAYOUT_FILE,
    LAYOUT_VERSION,
    MAX_MANIFEST_SIZE,
    REF_NAME,
    parse_index,
    ref_name,
    select_entry,
)
from dockyard.oci import digest as digests
from dockyard.oci import manifest as manifests
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.digest import VerifyingReader
from dockyard.oci.home import BlobOpener, RawManifest
from dockyard.oci.streams import ReadCloser


def blob_name(digest: str) -> str:
    """The archive member holding blob ``digest``."""
    algorithm, hex_part = digests.validate(digest).split(":", 1)
    return f"blobs/{algorithm}/{hex_part}"


class OCIArchiveSource:
    """Read the image ``tag`` names in the oci-archive at ``path`` (the only one if no tag)."""

    def __init__(self, path: Path, tag: str | None = None):
        self.archive = TarReader(path)
        try:
            self.index = self._read_index()
            self.descriptor = select_entry(self.index, tag, str(path))
        except BaseException:
            self.archive.close()
            raise

    def root_manifest(self) -> RawManifest:
        d = self.descriptor
        return self._read_manifest(d.digest, d.size, d.media_type)

    def manifest(self, digest: str) -> RawManifest:
        return self._read_manifest(digest, None, None)

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[ReadCloser]:
        return VerifyingReader(self.archive.open(blob_name(desc.digest)), desc.digest, desc.size)

    def close(self) -> None:
        self.archive.close()

    def _read_index(self) -> manifests.Index:
        where = f"{self.archive.path}: {INDEX_FILE}"
        if not self.archive.has(LAYOUT_FILE):
            raise NotFound(f"{self.archive.path} is not an oci-archive (no {LAYOUT_FILE} member)")
        if self.archive.size(INDEX_FILE) > MAX_MANIFEST_SIZE:
            raise ManifestError(f"{where}: too big for an index")
        with self.archive.open(INDEX_FILE) as f:
            return parse_index(f.read(), where)

    def _read_manifest(self, digest: str, size: int | None, media_type: str | None) -> RawManifest:
        where = f"manifest {digest} in {self.archive.path}"
        name = blob_name(digest)
        if self.archive.size(name) > MAX_MANIFEST_SIZE:
            raise ManifestError(f"{where}: too big for a manifest")
        with VerifyingReader(self.archive.open(name), digest, size) as reader:
            data = reader.read()
            reader.check()
        return RawManifest(data, manifests.detect_media_type(data, media_type, where))


class OCIArchiveWriter:
    """An oci-archive being written to ``path``, holding one image per :meth:`destination`."""

    def __init__(self, path: Path):
        self.tar = TarWriter(path)
        self._entries: list[Descriptor] = []

    def destination(
        self, tag: str | None, annotations: Mapping[str, str] | None = None
    ) -> OCIArchiveImage:
        """A destination for one image, named ``tag`` in the archive's ``index.json``.

        Its entry carries ``annotations`` too."""
        return OCIArchiveImage(self, tag, annotations)

    def add_entry(
        self, tag: str | None, desc: Descriptor, annotations: Mapping[str, str] | None = None
    ) -> None:
        """Name a root manifest already in the archive (a later entry of one tag wins)."""
        annotations = {**(annotations or {}), **({REF_NAME: tag} if tag else {})}
        entry = Descriptor(desc.media_type, desc.digest, desc.size, annotations)
        self._entries = [e for e in self._entries if tag is None or ref_name(e) != tag]
        self._entries.append(entry)

    def commit(self) -> None:
        """Write ``index.json`` and ``oci-layout`` and publish the archive."""
        if not self._entries:
            self.tar.abort()
            raise StoreError(f"nothing to write to {self.tar.path}: no image was committed")
        self.tar.add_bytes(LAYOUT_FILE, LAYOUT_VERSION)
        self.tar.add_bytes(INDEX_FILE, manifests.build_index(self._entries).raw)
        self.tar.commit()

    def abort(self) -> None:
        self.tar.abort()

    def __enter__(self) -> OCIArchiveWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


class OCIArchiveImage:
    """One image of an :class:`OCIArchiveWriter`; ``commit`` adds it to the archive's index."""

    def __init__(
        self,
        writer: OCIArchiveWriter,
        tag: str | None,
        annotations: Mapping[str, str] | None = None,
    ):
        self._writer = writer
        self._tag = tag
        self._annotations = annotations
        self._root: Descriptor | None = None

    def has_blob(self, desc: Descriptor) -> bool:
        return self._writer.tar.has(blob_name(desc.digest))

    def put_blob(
        self, desc: Descriptor, stream: ReadCloser, *, reopen: BlobOpener | None = None
    ) -> None:
        reader = digests.verified(stream, desc.digest, desc.size)
        self._writer.tar.add(blob_name(desc.digest), reader, desc.size)

    def put_manifest(self, manifest: RawManifest, *, root: bool) -> None:
        digest = digests.of_bytes(manifest.data)
        self._writer.tar.add_bytes(blob_name(digest), manifest.data)
        if root:
            media_type = manifests.detect_media_type(manifest.data, manifest.media_type)
            self._root = Descriptor(media_type, digest, len(manifest.data))

    def commit(self) -> None:
        if self._root is None:
            raise StoreError(f"nothing to commit to {self._writer.tar.path}: no root manifest")
        self._writer.add_entry(self._tag, self._root, self._annotations)

    def abort(self) -> None:
        """Nothing to undo for one image: the writer's owner aborts the archive."""


class OCIArchiveDestination(OCIArchiveImage):
    """Write one image as the oci-archive ``path``; the file appears at :meth:`commit`."""

    def __init__(self, path: Path, tag: str | None = None):
        super().__init__(OCIArchiveWriter(path), tag)

    def commit(self) -> None:
        super().commit()
        self._writer.commit()

    def abort(self) -> None:
        """Discard the unfinished archive (call it when the copy fails)."""
        self._writer.abort()

    def __enter__(self) -> OCIArchiveDestination:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()
