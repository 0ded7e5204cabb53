"""The store as an image home: an :class:`ImageSource` and an :class:`ImageDestination`."""

from __future__ import annotations

import weakref
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

from dockyard.errors import StoreError
from dockyard.layout.oci_dir import OCILayout
from dockyard.oci import manifest as manifests
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.home import BlobOpener, RawManifest
from dockyard.reference import Reference

if TYPE_CHECKING:
    from dockyard.store.store import Store


class StoreSource:
    """Read one stored image (``descriptor``, as :meth:`Store.resolve` found it)."""

    def __init__(self, layout: OCILayout, descriptor: Descriptor):
        self.layout = layout
        self.descriptor = descriptor

    def root_manifest(self) -> RawManifest:
        d = self.descriptor
        return self.layout.read_manifest(d.digest, d.size, d.media_type)

    def manifest(self, digest: str) -> RawManifest:
        return self.layout.read_manifest(digest)

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[BinaryIO]:
        return self.layout.blobs.open(desc.digest, desc.size)


class StoreDestination:
    """Write one image into the store, named ``ref`` at :meth:`commit`.

    Holds the store's lease from creation until :meth:`commit` or :meth:`close` (or
    until it is garbage collected), so a concurrent prune cannot take its blobs.
    """

    def __init__(self, store: Store, ref: Reference):
        self.store = store
        self.ref = ref
        self._root: Descriptor | None = None
        lease = store.lease()
        lease.acquire()
        self._release = weakref.finalize(self, lease.release)

    def has_blob(self, desc: Descriptor) -> bool:
        return self.store.blobs.has(desc.digest)

    def put_blob(
        self, desc: Descriptor, stream: BinaryIO, *, reopen: BlobOpener | None = None
    ) -> None:
        self.store.blobs.write(desc.digest, stream, desc.size)

    def put_manifest(self, manifest: RawManifest, *, root: bool) -> None:
        digest = self.store.blobs.write_bytes(manifest.data)
        if root:
            media_type = manifests.detect_media_type(manifest.data, manifest.media_type)
            self._root = Descriptor(media_type, digest, len(manifest.data))

    def commit(self) -> None:
        """Name the image, then end the lease."""
        if self._root is None:
            raise StoreError(f"nothing to commit for {self.ref}: no root manifest")
        try:
            self.store.tag(self.ref, self._root)
        finally:
            self.abort()

    def abort(self) -> None:
        """End the lease without naming anything (the copy failed)."""
        self._release()

    def __enter__(self) -> StoreDestination:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()
