"""What the registry needs of its storage, and how to open the one a config names.

Two backends implement :class:`RegistryStorage`: the filesystem (:mod:`.storage`,
``--root``) and an S3-compatible object store (:mod:`.s3storage`, ``--storage
s3://BUCKET/PREFIX``), where several replicas share one bucket. The API handlers, the
pull-through cache, bundles and gc use only what is named here (manifests, tags,
referrers and upstream notes are written once for both, :mod:`.manifeststore`); every call may block
(the app runs blob bodies and writes in threads). Names, tags and digests are validated
by the backend before they become paths or keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    from dockyard.oci.descriptor import Descriptor
    from dockyard.registry.server.config import ServerConfig
    from dockyard.registry.server.manifeststore import StoredManifest


class BlobStore(Protocol):
    """Blobs by digest, shared by all repositories; a blob is there only once verified."""

    def has(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int:
        """Raises :class:`NotFound` for a missing blob."""
        ...

    def open(self, digest: str, size: int | None = None) -> Any:
        """A verifying stream (a context manager) of the blob: DigestError at EOF."""
        ...

    def read_bytes(self, digest: str, size: int | None = None) -> bytes: ...

    def write(self, digest: str, stream: BinaryIO, size: int | None = None) -> Any:
        """Store a blob read from ``stream``, verified; nothing kept on a mismatch."""
        ...

    def __iter__(self) -> Iterator[str]: ...


class UploadWriter(Protocol):
    """Appends to one upload session; ``finish`` verifies and publishes the blob."""

    upload_id: str
    offset: int

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def close(self) -> None:
        """Keep the session for more chunks (from this or another replica)."""
        ...

    def finish(self, digest: str, storage: Any) -> bool:
        """Verify, publish and end the session.

        DigestError (nothing kept) on a mismatch; False if the blob was there already.
        """
        ...

    def abort(self) -> None: ...


class UploadSessions(Protocol):
    def start(self, name: str) -> str: ...

    def repository(self, upload_id: str) -> str | None:
        """The repository a session belongs to; None for no such session."""
        ...

    def size(self, upload_id: str) -> int: ...

    def open(self, upload_id: str) -> UploadWriter: ...

    def cancel(self, upload_id: str) -> None: ...

    def ids(self) -> list[str]: ...

    def last_activity(self, upload_id: str) -> float:
        """Seconds since the epoch of the session's last write."""
        ...


class BlobSink(Protocol):
    """A blob being written whose digest the writer checks itself (the cache's tee)."""

    def write(self, data: bytes | bytearray | memoryview) -> Any: ...

    def commit(self) -> None:
        """Make the blob visible (verified against its digest once more)."""
        ...

    def discard(self) -> None: ...


class RegistryStorage(Protocol):
    """Every repository of one registry: safe for many threads, processes and replicas."""

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def uploads(self) -> UploadSessions: ...

    @property
    def where(self) -> str:
        """For messages: the root directory or ``s3://bucket/prefix``."""
        ...

    def present(self) -> bool:
        """Whether a registry is there at all (gc refuses to run on nothing)."""
        ...

    def ensure(self) -> None: ...

    def close(self) -> None: ...

    def gc_lock(self, *, shared: bool) -> AbstractContextManager[Any]:
        """Manifest writes hold it shared; gc exclusive while it marks and sweeps."""
        ...

    # repositories and their blob links
    def repo_exists(self, name: str) -> bool: ...
    def repositories(self, last: str | None = None, limit: int | None = None) -> list[str]:
        """Repository names after ``last`` in catalog order, at most ``limit``.

        The order is :func:`.names.catalog_order`; only what that takes is listed.
        """
        ...

    def blob_size(self, digest: str) -> int | None: ...
    def has_blob(self, name: str, digest: str) -> bool: ...
    def linked_blob_size(self, name: str, digest: str) -> int | None:
        """The blob's size if the repository links it and it is there, else None.

        One call for a blob ``GET``/``HEAD``, in as few round trips as the store allows.
        """
        ...

    def link_blob(self, name: str, digest: str) -> None: ...
    def touch_blob(self, digest: str) -> None: ...
    def unlink_blob(self, name: str, digest: str) -> bool: ...
    def linked_blobs(self, name: str) -> list[str]: ...

    # blob bodies
    def blob_file(self, digest: str) -> Path | None:
        """A local file holding the blob, to send as it is; None: use :meth:`read_blob`."""
        ...

    def read_blob(self, digest: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The blob's bytes ``start`` .. ``start + length`` in big chunks, streamed."""
        ...

    def blob_url(self, digest: str) -> str | None:
        """A URL any client may ``GET`` the blob from for a while (pre-signed).

        For ``--redirect``; None if the backend has no such thing (files on disk).
        """
        ...

    def blob_sink(self, digest: str) -> BlobSink: ...

    # manifests, tags, referrers
    def manifest_media_type(self, name: str, digest: str) -> str | None: ...
    def has_manifest(self, name: str, digest: str) -> bool: ...
    def resolve_tag(self, name: str, tag: str) -> str | None: ...
    def tag_age(self, name: str, tag: str) -> float | None: ...
    def touch_tag(self, name: str, tag: str) -> None: ...
    def get_manifest(self, name: str, reference: str) -> StoredManifest | None: ...
    def put_manifest(
        self,
        name: str,
        data: bytes,
        media_type: str,
        tags: tuple[str, ...] = (),
        *,
        subject: Descriptor | None = None,
        artifact_type: str | None = None,
        annotations: dict[str, str] | None = None,
        digest: str | None = None,
    ) -> str: ...
    def set_tag(self, name: str, tag: str, digest: str) -> None: ...
    def delete_tag(self, name: str, tag: str) -> bool: ...
    def tags(self, name: str) -> list[str]: ...
    def tags_of(self, name: str, digest: str) -> list[str]:
        """The tags that name ``digest``."""
        ...

    def revisions(self, name: str) -> list[str]: ...
    def delete_manifest(self, name: str, digest: str) -> bool: ...
    def referrers(self, name: str, subject: str) -> list[dict[str, Any]]: ...

    # the pull-through cache's note of what a repository mirrors
    def upstream_name(self, name: str) -> str | None: ...
    def set_upstream_name(self, name: str, upstream: str) -> None: ...

    # gc
    def blob_age(self, digest: str) -> float | None:
        """Seconds since the blob was written or last used (:meth:`touch_blob`)."""
        ...

    def delete_blob_if_idle(self, digest: str, grace: float) -> bool:
        """Delete the blob unless it was used within ``grace`` seconds (checked last)."""
        ...

    def remove_stale(self, older_than: float) -> int:
        """Remove what killed writers left behind; return how much.

        That is temp files and orphaned multipart uploads.
        """
        ...


def open_storage(config: ServerConfig) -> RegistryStorage:
    """The backend ``config`` names: ``config.storage`` (``s3://...``), else ``root``."""
    if config.storage:
        from dockyard.registry.server.s3storage import S3Storage

        return S3Storage.from_config(config)
    from dockyard.registry.server.storage import Storage

    return Storage(config.root)
