"""Copy one image from any :class:`ImageSource` to any :class:`ImageDestination`.

Blobs go in parallel, each skipped when the destination already has it; manifests go
last, children before the index that names them, so a reader never sees a manifest
whose blobs are missing. A :class:`~.convert.Conversion` rewrites media types and layer
compression on the way (the manifests then are new documents, written after the blobs
they name).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from dockyard.oci import digest as digests
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.oci.home import ImageDestination, ImageSource, RawManifest
from dockyard.oci.streams import ReadCloser
from dockyard.transfer.convert import (
    Blob,
    Conversion,
    plan,
    rewrite_index,
    rewrite_layer,
    rewrite_manifest,
    workspace,
)
from dockyard.transfer.resolve import fetch_child

if TYPE_CHECKING:
    from dockyard.store import Store
    from dockyard.transfer.transports import Location

DEFAULT_JOBS = 6


class CopyProgress(Protocol):
    """What a progress display is told; every method may be called from worker threads."""

    def blob_started(self, desc: Descriptor) -> None: ...

    def blob_advanced(self, desc: Descriptor, nbytes: int) -> None: ...

    def blob_finished(self, desc: Descriptor, *, skipped: bool) -> None: ...


class _Silent:
    def blob_started(self, desc: Descriptor) -> None:
        pass

    def blob_advanced(self, desc: Descriptor, nbytes: int) -> None:
        pass

    def blob_finished(self, desc: Descriptor, *, skipped: bool) -> None:
        pass


class _CountingReader:
    """Reports bytes to the progress display as the destination reads them."""

    def __init__(self, stream: ReadCloser, desc: Descriptor, progress: CopyProgress):
        self._stream = stream
        self._desc = desc
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        if data:
            self._progress.blob_advanced(self._desc, len(data))
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()

    @property
    def verifies(self) -> str | None:
        return getattr(self._stream, "verifies", None)


@dataclass
class CopyResult:
    """What was copied: the root written to the destination and the blob accounting."""

    manifest: RawManifest
    digest: str
    copied: list[Descriptor] = field(default_factory=list)
    skipped: list[Descriptor] = field(default_factory=list)


def copy_image(
    source: ImageSource,
    destination: ImageDestination,
    *,
    platform: Platform | None = None,
    all_platforms: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: CopyProgress | None = None,
    conversion: Conversion | None = None,
) -> CopyResult:
    """Copy the image ``source`` is opened on into ``destination`` and commit it.

    An index is resolved to one platform (``platform``, default the host's) unless
    ``all_platforms`` is set, in which case the index and every child are copied.
    ``conversion`` (default: none) rewrites media types and layers on the way.
    """
    progress = progress or _Silent()
    conversion = conversion or Conversion()
    try:
        with nullcontext(None) if conversion.changes_nothing else workspace() as workdir:
            result = _copy(
                source, destination, platform, all_platforms, jobs, progress, conversion, workdir
            )
    except BaseException:
        destination.abort()
        raise
    return result


def copy(
    source: str | Location,
    destination: str | Location,
    *,
    store: Store | str | Path | None = None,
    platform: Platform | None = None,
    all_platforms: bool = False,
    tls_verify: bool | None = None,
    src_tls_verify: bool | None = None,
    dest_tls_verify: bool | None = None,
    compression_format: str | None = None,
    preserve_digests: bool = False,
    progress: CopyProgress | None = None,
) -> CopyResult:
    """Copy the image at ``source`` to ``destination``.

    Both are transport strings (``docker://REF``, ``oci:DIR[:TAG]``,
    ``oci-archive:FILE[:TAG]``, ``docker-archive:FILE[:REF]``, ``local:REF`` or a bare
    ``REF``) or locations.

    ``store`` (a :class:`Store` or its root; default: the default root) is where
    ``local:`` names live. An OCI layout or archive gets OCI media types and a registry
    compressed layers, unless ``preserve_digests`` (see :func:`.convert.plan`);
    ``src_tls_verify`` and ``dest_tls_verify`` override ``tls_verify`` on one side.
    """
    from dockyard.store import as_store
    from dockyard.transfer.transports import as_location

    store_root = as_store(store).root
    src, dest = as_location(source), as_location(destination)
    conversion = plan(
        dest.transport, compression_format=compression_format, preserve_digests=preserve_digests
    )
    opened = src.source(
        store_root=store_root, tls_verify=tls_verify if src_tls_verify is None else src_tls_verify
    )
    target = dest.destination(
        store_root=store_root,
        tls_verify=tls_verify if dest_tls_verify is None else dest_tls_verify,
        source=src,
    )
    return copy_image(
        opened,
        target,
        platform=platform,
        all_platforms=all_platforms,
        progress=progress,
        conversion=conversion,
    )


def _copy(
    source: ImageSource,
    destination: ImageDestination,
    platform: Platform | None,
    all_platforms: bool,
    jobs: int,
    progress: CopyProgress,
    conversion: Conversion,
    workdir,
) -> CopyResult:
    root = source.root_manifest()
    parsed = manifests.parse(root.data, root.media_type)
    result = CopyResult(root, parsed.digest)

    if isinstance(parsed, manifests.Index):
        if all_platforms:
            children = [fetch_child(source, d) for d in parsed.manifests]
        else:
            chosen = parsed.select(platform or Platform.host())
            children = [fetch_child(source, chosen)]
    else:
        children = [(root, parsed)]

    blobs: dict[str, Descriptor] = {}
    for _, child in children:
        if isinstance(child, manifests.Manifest):
            for desc in child.blobs:
                blobs.setdefault(desc.digest, desc)

    rewritten: dict[str, Blob] = {}

    def copy_blob(desc: Descriptor) -> bool:
        progress.blob_started(desc)
        if conversion.touches(desc):
            blob = rewritten[desc.digest] = rewrite_layer(
                conversion, lambda: source.open_blob(desc), desc, workdir
            )
            if blob.path is not None:
                return put_rewritten(desc, blob, blob.path)
        if destination.has_blob(desc):
            progress.blob_finished(desc, skipped=True)
            return False

        @contextmanager
        def reopen() -> Iterator[ReadCloser]:
            with source.open_blob(desc) as again:
                yield _CountingReader(again, desc, progress)

        with reopen() as stream:
            destination.put_blob(desc, stream, reopen=reopen)
        progress.blob_finished(desc, skipped=False)
        return True

    def put_rewritten(desc: Descriptor, blob: Blob, path: Path) -> bool:
        target = Descriptor(mt.layer_media_type(blob.compression), blob.digest, blob.size)
        if destination.has_blob(target):
            progress.blob_finished(desc, skipped=True)
            return False

        def reopen() -> BinaryIO:
            return open(path, "rb")

        with reopen() as stream:
            destination.put_blob(target, stream, reopen=reopen)
        progress.blob_advanced(desc, desc.size)
        progress.blob_finished(desc, skipped=False)
        return True

    ordered = sorted(blobs.values(), key=lambda d: -d.size)  # big ones first: less tail
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for desc, copied in zip(ordered, pool.map(copy_blob, ordered), strict=True):
            (result.copied if copied else result.skipped).append(desc)

    written = [_converted(conversion, raw, child, rewritten) for raw, child in children]
    if isinstance(parsed, manifests.Index) and all_platforms:
        for raw in written:
            destination.put_manifest(raw, root=False)
        if not conversion.changes_nothing:
            new = {
                child.digest: Descriptor(raw.media_type, digests.of_bytes(raw.data), len(raw.data))
                for (_, child), raw in zip(children, written, strict=True)
            }
            root = RawManifest(*rewrite_index(conversion, parsed, new))
            result.manifest, result.digest = root, digests.of_bytes(root.data)
        destination.put_manifest(root, root=True)
    else:
        raw = written[0]
        destination.put_manifest(raw, root=True)
        result.manifest, result.digest = raw, digests.of_bytes(raw.data)
    destination.commit()
    return result


def _converted(
    conversion: Conversion,
    raw: RawManifest,
    parsed: manifests.Manifest | manifests.Index,
    rewritten: dict[str, Blob],
) -> RawManifest:
    """An image manifest as the conversion has it (a nested index stays as it is)."""
    if conversion.changes_nothing or not isinstance(parsed, manifests.Manifest):
        return raw
    return RawManifest(*rewrite_manifest(conversion, parsed, rewritten))
