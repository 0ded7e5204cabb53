"""Moving images between a registry and the store: ``dockyard pull`` and ``push``.

Also the base images that builds, ``dockyard run`` and pipelines pull on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.errors import NotFound
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.reference import Reference, as_reference
from dockyard.store import Store, as_store

if TYPE_CHECKING:  # copying is imported on a pull: a stored image needs none of it (~10 ms)
    from dockyard.transfer.copy import CopyProgress, CopyResult


def pull(
    image: str | Reference,
    *,
    store: Store | str | Path | None = None,
    platform: Platform | None = None,
    all_platforms: bool = False,
    tls_verify: bool | None = None,
    progress: CopyProgress | None = None,
) -> CopyResult:
    """Copy ``image`` from its registry (or a mirror of it) into ``store``, same name.

    One platform (``platform``, default the host's) unless ``all_platforms``.
    """
    from dockyard.registry.client.mirrors import registry_source
    from dockyard.transfer.copy import copy_image

    ref = as_reference(image)
    return copy_image(
        registry_source(ref, tls_verify),
        as_store(store).destination(ref),
        platform=platform,
        all_platforms=all_platforms,
        progress=progress,
    )


def push(
    image: str | Reference,
    destination: str | Reference | None = None,
    *,
    store: Store | str | Path | None = None,
    tls_verify: bool | None = None,
    compression_format: str | None = None,
    preserve_digests: bool = False,
    progress: CopyProgress | None = None,
) -> CopyResult:
    """Copy the stored ``image``, every platform, to its registry or ``destination``.

    ``destination`` is a registry reference.

    Only blobs the registry lacks are sent; blobs of another repository of the same
    registry are mounted instead of uploaded. Plain-tar layers are gzipped on the way
    unless ``preserve_digests``.
    """
    from dockyard.registry.client import RegistryDestination, client_for
    from dockyard.transfer.convert import plan
    from dockyard.transfer.copy import copy_image

    ref = as_reference(image)
    target = ref if destination is None else as_reference(destination)
    mount_from = ref.repository if ref.registry == target.registry else None
    conversion = plan(
        "docker", compression_format=compression_format, preserve_digests=preserve_digests
    )
    dest = RegistryDestination(client_for(target, tls_verify=tls_verify), target, mount_from)
    return copy_image(
        as_store(store).source(ref),
        dest,
        all_platforms=True,
        progress=progress,
        conversion=conversion,
    )


def ensure_image(
    store: Store,
    ref: Reference,
    *,
    platform: Platform | None = None,
    tls_verify: bool | None = None,
    progress: CopyProgress | None = None,
    note: Callable[[str], None] | None = None,
) -> Descriptor:
    """The stored image ``ref``, pulled first when the store lacks it.

    As docker does for ``FROM`` and ``run``; ``note`` hears of a pull.
    """
    try:
        return store.resolve(ref)
    except NotFound:
        if note:
            note(f"pulling {ref}")
        pull(ref, store=store, platform=platform, tls_verify=tls_verify, progress=progress)
        return store.resolve(ref)
