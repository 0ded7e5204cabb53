"""The store as an image home: an :class:`ImageSource` and an :class:`ImageDestination`."""

from __future__ import annotations

import weakref
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING

from dockyard.layout.oci_dir import BlobsDestination, OCILayout
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.home import RawManifest
from dockyard.oci.streams import ReadCloser
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

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[ReadCloser]:
        return self.layout.blobs.open(desc.digest, desc.size)


class StoreDestination(BlobsDestination):
    """Write one image into the store, named ``ref`` at :meth:`commit`.

    Holds the store's lease from creation until :meth:`commit` or :meth:`close` (or
    until it is garbage collected), so a concurrent prune cannot take its blobs.
    """

    def __init__(self, store: Store, ref: Reference):
        super().__init__(store.blobs, ref)
        self.store = store
        self.ref = ref
        lease = store.lease()
        lease.acquire()
        self._release = weakref.finalize(self, lease.release)

    def commit(self) -> None:
        """Name the image, then end the lease."""
        try:
            self.store.tag(self.ref, self.root())
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
