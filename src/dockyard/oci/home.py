"""The two interfaces every image home implements: ImageSource and ImageDestination.

The homes: a registry, the local store, an OCI layout directory, an oci-archive or a
docker-archive.
``transfer.copy`` is written once against these and so copies between any two homes.
A source is opened on one image (a reference resolved in that home); a destination is
opened on one name it will write to. Blob methods may be called from several threads.
Blobs move as :class:`~dockyard.oci.streams.ReadCloser` streams: ``read`` and ``close``
are all a home may count on.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from dockyard.frozen import Frozen
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.streams import ReadCloser

BlobOpener = Callable[[], AbstractContextManager[ReadCloser]]
"""Opens a blob's bytes again from the start (for a destination that must retry)."""


class RawManifest(Frozen):
    """A manifest or index exactly as stored, with the media type it was served as."""

    __slots__ = ("data", "media_type")
    data: bytes
    media_type: str

    def __init__(self, data: bytes, media_type: str) -> None:
        self._set(data=data, media_type=media_type)


class ImageSource(Protocol):
    """Where an image is read from: its root manifest, manifests by digest, blobs."""

    def root_manifest(self) -> RawManifest:
        """The manifest or index the opened reference points at."""
        ...

    def manifest(self, digest: str) -> RawManifest:
        """A manifest by digest (the children of an index)."""
        ...

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[ReadCloser]:
        """A stream of the blob's bytes; reading it to EOF verifies its digest."""
        ...


class ImageDestination(Protocol):
    """Where an image is written to: blobs first, then manifests, then commit."""

    def has_blob(self, desc: Descriptor) -> bool:
        """True if the destination already holds the blob (the copy skips it)."""
        ...

    def put_blob(
        self, desc: Descriptor, stream: ReadCloser, *, reopen: BlobOpener | None = None
    ) -> None:
        """Store a blob; the bytes must match ``desc`` or nothing is kept.

        A destination that can fail half-way (a network) may call ``reopen`` to read the
        bytes again from the start; local homes ignore it.
        """
        ...

    def put_manifest(self, manifest: RawManifest, *, root: bool) -> None:
        """Store a manifest; ``root`` is the one the destination name/tag points at."""
        ...

    def commit(self) -> None:
        """Finish (write the archive index, flush); called once after a successful copy."""
        ...

    def abort(self) -> None:
        """Give up after a failed copy: drop an unfinished archive, release locks.

        Harmless after :meth:`commit` and when called twice.
        """
        ...
