"""Offline bundles: stored images saved together, by their names, as one OCI archive or layout.

A network-isolated site loads the bundle with ``dockyard load`` or ``dockyard registry
import`` (sealer's point: the bundle carries every image needed).

Each image's ``index.json`` entry is named by its full reference in both
``org.opencontainers.image.ref.name`` (what ``dockyard load``, ``registry import``,
podman and skopeo read) and ``io.containerd.image.name`` (what containerd and docker
read). Bytes are kept as they are (no OCI conversion), so a name pinned by digest still
resolves after loading. An index is saved whole when the store holds every platform of
it, else as the one platform asked for; a name pinned to the index's digest then names
that platform's manifest by its own digest instead (with a note).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import NotFound
from dockyard.layout.oci_dir import REF_NAME, LayoutImageSource
from dockyard.oci import manifest as manifests
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.reference import Reference
from dockyard.store import Store
from dockyard.transfer.copy import copy_image

CONTAINERD_NAME = "io.containerd.image.name"


@dataclass(frozen=True)
class SavedImage:
    """One image in a bundle: the name it was saved under and its root manifest."""

    name: Reference
    digest: str


def is_layout(output: str) -> bool:
    """Does ``output`` ask for a layout directory rather than an archive file?

    It does when it is an existing directory, or a path written with a trailing ``/``.
    """
    return output.endswith("/") or Path(output).is_dir()


def save_bundle(
    store: Store,
    images: Iterable[tuple[Reference, Descriptor]],
    output: str,
    *,
    platform: Platform | None = None,
    note: Callable[[str], None] | None = None,
) -> list[SavedImage]:
    """Save the stored ``images`` (name, stored root manifest) to ``output``.

    ``output`` is an OCI layout if :func:`is_layout`, else an oci-archive (written
    atomically). A name given twice is saved once.
    """
    note = note or (lambda _line: None)
    unique = list(dict(images).items())
    if is_layout(output):
        return _save_layout(store, unique, Path(output), platform, note)
    from dockyard.layout.oci_archive import OCIArchiveWriter

    saved = []
    with OCIArchiveWriter(Path(output)) as writer:
        for ref, desc in unique:
            saved.append(
                _save_one(
                    store,
                    ref,
                    desc,
                    platform,
                    note,
                    lambda name: writer.destination(str(name), _annotations(name)),
                )
            )
        writer.commit()
    return saved


def _save_layout(store, images, output, platform, note) -> list[SavedImage]:
    from dockyard.layout.oci_dir import LayoutDestination

    return [
        _save_one(
            store,
            ref,
            desc,
            platform,
            note,
            lambda name: LayoutDestination(output, str(name), _annotations(name)),
        )
        for ref, desc in images
    ]


def _annotations(name: Reference) -> dict[str, str]:
    return {REF_NAME: str(name), CONTAINERD_NAME: str(name)}


def _save_one(store, ref, desc, platform, note, destination) -> SavedImage:
    """Copy one stored image to the destination ``destination(name)`` opens."""
    parsed = store.read_manifest(desc)
    whole = isinstance(parsed, manifests.Index) and all(
        store.blobs.has(child.digest) for child in parsed.manifests
    )
    name = ref
    if isinstance(parsed, manifests.Index) and not whole:
        chosen = store.image_manifest(desc, platform)
        if chosen is None:
            raise NotFound(f"{ref}: no image for {platform or Platform.host()} in the store")
        if ref.digest is not None:  # the root written is one platform's manifest
            name = ref.replace(digest=chosen.digest)
            note(f"{ref}: only {platform or Platform.host()} is stored; saved as {name}")
    source = LayoutImageSource(store.layout, desc)
    result = copy_image(source, destination(name), platform=platform, all_platforms=whole)
    return SavedImage(name, result.digest)
