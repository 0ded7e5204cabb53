"""A registry as an image home.

:class:`RegistrySource` and :class:`RegistryDestination` implement ``dockyard.oci.home.ImageSource``
/ ``ImageDestination``."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from dockyard.errors import DigestError
from dockyard.oci import digest as digests
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.digest import VerifyingReader
from dockyard.oci.home import BlobOpener, RawManifest
from dockyard.oci.streams import ReadCloser
from dockyard.reference import Reference
from dockyard.registry.client.client import RegistryClient, RegistryManifest
from dockyard.registry.client.upload import StreamNotReopenable


class RegistrySource:
    """The image ``ref`` names (its digest if pinned, else its tag) in a registry."""

    def __init__(self, client: RegistryClient, ref: Reference):
        self.client = client
        self.ref = ref

    def root_manifest(self) -> RegistryManifest:
        return self.client.get_manifest(self.ref.repository, self.ref.identifier)

    def manifest(self, digest: str) -> RegistryManifest:
        return self.client.get_manifest(self.ref.repository, digest)

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[VerifyingReader]:
        return self.client.open_blob(self.ref.repository, desc)


class _Watched:
    """A stream that remembers whether anything has been read from it.

    ``verifies`` is the wrapped stream's: a blob the source already verifies as it is
    read is not hashed a second time on its way to the registry."""

    def __init__(self, stream: ReadCloser):
        self._stream = stream
        self.touched = False

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.touched = self.touched or bool(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()

    @property
    def verifies(self) -> str | None:
        return getattr(self._stream, "verifies", None)


class RegistryDestination:
    """Writes an image to ``ref``'s repository.

    The root manifest goes to ``ref.tag`` (or by digest when the reference has no tag).

    ``mount_from`` names a repository of the same registry that may hold the blobs (the
    source of a copy): each blob is then mounted from it when possible, else uploaded.
    """

    def __init__(self, client: RegistryClient, ref: Reference, mount_from: str | None = None):
        self.client = client
        self.ref = ref
        self.mount_from = mount_from if mount_from != ref.repository else None
        self.mounted: list[Descriptor] = []

    def has_blob(self, desc: Descriptor) -> bool:
        return self.client.has_blob(self.ref.repository, desc.digest)

    def put_blob(
        self, desc: Descriptor, stream: ReadCloser, *, reopen: BlobOpener | None = None
    ) -> None:
        """Mount or upload a blob, verified against ``desc`` before the registry may commit it.

        Retries: the upload restarts from a fresh session after a 5xx, 429, a dropped
        connection or an expired token. ``stream`` serves the first attempt (and any
        retry before a byte of it was read); later attempts call ``reopen()`` for the
        bytes from the start. Without ``reopen``, a failure after the stream was read
        raises the registry's error and the caller may retry the whole blob.
        """
        given = _Watched(stream)

        def open_stream() -> AbstractContextManager[ReadCloser]:
            if not given.touched:
                return nullcontext(given)
            if reopen is None:
                raise StreamNotReopenable(desc.digest)
            return reopen()

        if self.client.upload_blob(
            self.ref.repository, desc, open_stream, mount_from=self.mount_from
        ):
            self.mounted.append(desc)

    def put_manifest(self, manifest: RawManifest, *, root: bool) -> None:
        digest = digests.of_bytes(manifest.data)
        reference = (self.ref.tag or self.ref.digest or digest) if root else digest
        stored = self.client.put_manifest(self.ref.repository, reference, manifest)
        if root and self.ref.digest and stored != self.ref.digest:
            raise DigestError(f"manifest for {self.ref}: content has digest {stored}")

    def commit(self) -> None:
        """Nothing to do: a registry shows each write as soon as it is made."""

    def abort(self) -> None:
        """Nothing to undo: blobs without a manifest are the registry's garbage."""
