"""Bringing images from a registry into the store: ``dockyard pull``, and the base
images that builds, ``dockyard run`` and pipelines pull on first use."""

from __future__ import annotations

from collections.abc import Callable

from dockyard.errors import NotFound
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.reference import Reference
from dockyard.store import Store
from dockyard.transfer.copy import CopyProgress, CopyResult, copy_image


def pull(
    store: Store,
    ref: Reference,
    *,
    platform: Platform | None = None,
    all_platforms: bool = False,
    tls_verify: bool | None = None,
    progress: CopyProgress | None = None,
) -> CopyResult:
    """Copy ``ref`` from its registry (or a mirror of it) into ``store`` under the same
    name."""
    from dockyard.registry.client.mirrors import registry_source

    return copy_image(
        registry_source(ref, tls_verify),
        store.destination(ref),
        platform=platform,
        all_platforms=all_platforms,
        progress=progress,
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
    """The stored image ``ref``, pulled first when the store lacks it (``note`` hears of
    that), as docker does for ``FROM`` and ``run``."""
    try:
        return store.resolve(ref)
    except NotFound:
        if note:
            note(f"pulling {ref}")
        pull(store, ref, platform=platform, tls_verify=tls_verify, progress=progress)
        return store.resolve(ref)
