"""``container commit``: a working container's changes as a new image.

The upper dir is packed as one layer (:func:`dockyard.layers.pack` in overlay mode:
deletions and opaque directories become OCI whiteouts) on top of the image the
container stands on; config and history are carried over and ``--change`` applied. Then
the upper dir itself is *frozen*: renamed into the store as that layer's snapshot (no
copy), and the container goes on over a fresh, empty upper dir on the new image. So the
next commit packs only what changed after this one, and its cost is the changed bytes,
never the image's size.

A commit is crash-safe: the image is named before the record says ``pending`` (the new
head and chain), and whoever next locks the container finishes the freeze
(:func:`finish_pending`), whether or not the rename had happened.

``--squash`` packs the merged rootfs instead, as the image's only layer; the container
stays as it was (its changes are still to commit on its own image).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from dockyard.containers import rootfs
from dockyard.containers.catalog import Catalog, WorkingContainer
from dockyard.containers.diff import unchanged
from dockyard.errors import BuildError, ContainerError
from dockyard.layers.packer import PackedLayer, pack
from dockyard.oci import digest as digests
from dockyard.oci import manifest as manifests
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.oci.home import RawManifest
from dockyard.oci.mutate import ImageState
from dockyard.reference import Reference
from dockyard.runtime.snapshots import Snapshots, chain_id
from dockyard.store import Store
from dockyard.store.holds import Hold

if TYPE_CHECKING:
    from dockyard.builder.frontend import commands as ins

CREATED_BY = "dockyard container commit"
_NOT_CHANGES = ("from", "run", "copy", "add", "arg")


class NothingToCommit(ContainerError):
    """The container has no changes since its image, and no empty layer was asked for."""


def parse_changes(texts: Sequence[str]) -> list[ins.Instruction]:
    """``--change`` values as instructions.

    Dockerfile lines that only change the config (CMD, ENTRYPOINT, ENV, LABEL, USER, WORKDIR,
    EXPOSE, VOLUME, ...)."""
    if not texts:  # the frontend costs ~15 ms to import: only with --change
        return []
    from dockyard.builder.frontend.parse import parse_instruction
    from dockyard.builder.frontend.parser import parse

    found: list[ins.Instruction] = []
    for text in texts:
        for node in parse(text, "--change").nodes:
            if node.keyword in _NOT_CHANGES:
                raise BuildError(f"{node.command.upper()} cannot be a --change", "--change")
            found.append(parse_instruction(node, file="--change"))
    return found


def commit(
    catalog: Catalog,
    snapshots: Snapshots,
    container: WorkingContainer,
    ref: Reference,
    *,
    message: str | None = None,
    changes: Sequence[ins.Instruction] = (),
    squash: bool = False,
    allow_empty: bool = False,
    compression: str | None = "gzip",
) -> manifests.Manifest:
    """Commit ``container`` (locked by the caller) as the image ``ref``; return its manifest.

    See the module doc. Raise :class:`NothingToCommit` for an unchanged container unless
    ``allow_empty`` (or ``squash``)."""
    store = catalog.store
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    base = rootfs.head_manifest(store, container)
    if base is None:
        from dockyard.builder.image import scratch

        state = scratch(Platform.from_dict(container.record.platform))
    else:
        state = ImageState.from_image(store.read_config(base), list(base.layers), base.digest)
    if not squash and not allow_empty and _unchanged(store, snapshots, container):
        raise NothingToCommit(
            f"container {container.name}: nothing to commit (no changes since "
            f"{container.record.committed or container.record.image}); --allow-empty "
            "commits an empty layer"
        )
    for instr in changes:
        _apply_change(state, instr)
    hold = store.blob_hold()  # the new blobs, until the image names them
    if squash:
        with rootfs.merged(store, snapshots, container) as merged:
            layer = _pack(store, hold, merged, overlay=False, compression=compression)
        state.layers.clear()
        state.diff_ids.clear()
        for entry in state.doc["history"]:
            entry["empty_layer"] = True
        return _name(store, state, layer, ref, created, message)
    remount = container.record.mounted
    if remount:
        rootfs.unmount(container)  # the upper dir must be still to pack and freeze
    try:
        layer = _pack(store, hold, container.upper, overlay=True, compression=compression)
        below = container.record.chain[-1] if container.record.chain else None
        manifest = _name(store, state, layer, ref, created, message)
        head = Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
        container.record.pending = {
            "head": head.to_dict(),
            "name": str(ref),
            "chain": [*container.record.chain, chain_id(below, layer.diff_id)],
        }
        catalog.pin(container.record, base, *_pins(manifest, container.record.pending["chain"]))
        container.save()
        finish_pending(catalog, container, snapshots)
    finally:
        if remount:
            rootfs.mount(store, snapshots, container)
    return manifest


def _unchanged(store: Store, snapshots: Snapshots, container: WorkingContainer) -> bool:
    """Whether ``container`` changed nothing: its upper dir is empty or holds only
    directories overlayfs copied up and left as they were (runc's mount stubs')."""
    if not any(os.scandir(container.upper)):
        return True
    return unchanged(container.upper, rootfs.lowers(store, snapshots, container))


def finish_pending(
    catalog: Catalog, container: WorkingContainer, snapshots: Snapshots | None = None
) -> None:
    """Freeze the upper dir of a commit that named its image (see the module doc).

    It becomes the new layer's snapshot, the container moves onto the new image."""
    pending = container.record.pending
    if pending is None:
        return
    with snapshots or Snapshots(catalog.store) as held:
        if container.upper.is_dir():
            # A fresh upper (the rename was done) is deleted: the snapshot exists.
            held.commit(container.upper, pending["chain"][-1])
    container.upper.mkdir(mode=0o755)
    container.record.head = pending["head"]
    container.record.chain = pending["chain"]
    container.record.committed = pending["name"]
    container.record.pending = None
    catalog.pin(container.record, rootfs.head_manifest(catalog.store, container))
    container.save()


def _apply_change(state: ImageState, instr: ins.Instruction) -> None:
    from dockyard.builder.frontend import commands as ins
    from dockyard.builder.image import apply_metadata

    instr = instr.expand(state.env)
    if isinstance(instr, ins.Workdir):
        state.set_workdir(instr.resolve(state.workdir))
    else:
        apply_metadata(state, instr)


def _pack(
    store: Store, hold: Hold, source: Path, *, overlay: bool, compression: str | None
) -> PackedLayer:
    with store.lease(), store.blobs.ingest() as blob:
        out = cast(BinaryIO, blob.file)  # pack only writes to it
        packed = pack(source, out, overlay=overlay, compression=compression)
        blob.commit(packed.digest)
        hold.add([packed.digest])
    return packed


def _name(
    store: Store,
    state: ImageState,
    layer: PackedLayer,
    ref: Reference,
    created: str,
    message: str | None,
) -> manifests.Manifest:
    """Add ``layer`` to ``state`` with its history entry; store and name the image."""
    state.add_layer(layer.descriptor(), layer.diff_id, CREATED_BY, created, message or None)
    config, manifest = state.finish(created)
    with store.destination(ref) as destination:  # its lease keeps a prune away
        store.blobs.write_bytes(config)
        destination.put_manifest(RawManifest(manifest.raw, manifest.media_type), root=True)
        destination.commit()
    return manifest


def _pins(manifest: manifests.Manifest, chain: Sequence[str]) -> list[str]:
    return [
        manifest.digest,
        manifest.config.digest,
        *(layer.digest for layer in manifest.layers),
        *(digests.hex_part(c) for c in chain),
    ]
