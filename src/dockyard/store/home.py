"""The store as an image destination.

Its source is a layout's: :class:`~dockyard.layout.oci_dir.LayoutImageSource`."""

from __future__ import annotations

import weakref
from types import TracebackType
from typing import TYPE_CHECKING

from dockyard.layout.oci_dir import BlobsDestination
from dockyard.reference import Reference

if TYPE_CHECKING:
    from dockyard.store.store import Store


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
