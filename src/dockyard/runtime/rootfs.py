"""A container's writable root: an overlay of snapshot dirs and a fresh upper dir.

Everything the container writes lands in ``upper`` (overlay whiteouts for deletions),
which outlives the mount: the builder packs it into a layer and can register it as the
next snapshot, ``dockyard run`` keeps it for a later commit.

From an image name to a rootfs, as ``dockyard run``, pipeline steps and the builder's
views all go::

    image = stored_image(store, ref)  # pulled first if the store lacks it
    with scratch_rootfs(snapshots, snapshots.prepare(image.manifest)) as fs:
        ...  # run in fs.merged; its changes go with the block
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import NotFound
from dockyard.frozen import Frozen
from dockyard.runtime import interrupts, mounts

if TYPE_CHECKING:
    from dockyard.oci.descriptor import Platform
    from dockyard.oci.manifest import Manifest
    from dockyard.reference import Reference
    from dockyard.runtime.snapshots import Snapshots
    from dockyard.store import Store
    from dockyard.transfer.copy import CopyProgress


class StoredImage(Frozen):
    """An image of the store for one platform.

    The name asked for, its manifest and its config document."""

    __slots__ = ("config", "manifest", "ref")
    ref: Reference
    manifest: Manifest
    config: dict[str, Any]

    def __init__(self, ref: Reference, manifest: Manifest, config: dict[str, Any]):
        self._set(ref=ref, manifest=manifest, config=config)


def stored_image(
    store: Store,
    ref: Reference,
    *,
    platform: Platform | None = None,
    tls_verify: bool | None = None,
    progress: CopyProgress | None = None,
    note: Callable[[str], None] | None = None,
) -> StoredImage:
    """The image ``ref`` for ``platform`` (default: the host's), pulled into ``store`` if missing.

    ``note`` hears of the pull, as docker does for ``run``; NotFound if it has no image for the
    platform."""
    from dockyard.transfer.pull import ensure_image

    descriptor = ensure_image(
        store, ref, platform=platform, tls_verify=tls_verify, progress=progress, note=note
    )
    manifest = store.image_manifest(descriptor, platform)
    if manifest is None:
        raise NotFound(f"image {ref} has no image for this platform in the store")
    return StoredImage(ref, manifest, store.read_config(manifest))


@contextlib.contextmanager
def scratch_rootfs(snapshots: Snapshots, lowers: Sequence[Path]) -> Iterator[OverlayRootfs]:
    """A fresh writable rootfs over the snapshot dirs ``lowers`` for the ``with`` block.

    ``lowers`` top first. It lives in a held scratch dir; it and its changes are gone afterwards."""
    with snapshots.scratch() as scratch, overlay_rootfs(lowers, scratch) as fs:
        yield fs


class OverlayRootfs(Frozen):
    """The directories of a mounted overlay rootfs."""

    __slots__ = ("lowers", "merged", "upper")
    merged: Path  # the rootfs to run in
    upper: Path  # what the container changed
    lowers: tuple[Path, ...]  # top first

    def __init__(self, merged: Path, upper: Path, lowers: tuple[Path, ...]):
        self._set(merged=merged, upper=upper, lowers=lowers)


@contextlib.contextmanager
def overlay_rootfs(lowers: Sequence[Path], state_dir: Path) -> Iterator[OverlayRootfs]:
    """Mount ``lowers`` with the upper dir ``state_dir/upper`` at ``state_dir/merged``.

    ``lowers`` top first, none for an empty rootfs; the upper dir is created if missing, kept if
    present.

    On exit the overlay is unmounted whatever happened, and only ``upper`` is left in
    ``state_dir``. Keep ``state_dir`` on the store's filesystem if the upper dir is to
    become a snapshot (see :meth:`.Snapshots.commit`).
    """
    upper, work, merged = state_dir / "upper", state_dir / "work", state_dir / "merged"
    empty = state_dir / "empty"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        upper.mkdir(mode=0o755, exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)  # a crashed run's; overlay wants it empty
        work.mkdir(mode=0o700)
        merged.mkdir(exist_ok=True)
        if not lowers:
            empty.mkdir(exist_ok=True)
        mounts.mount_overlay(merged, list(lowers) or [empty], upper, work)
        yield OverlayRootfs(merged, upper, tuple(lowers))
    finally:
        with interrupts.deferred():
            mounts.unmount(merged)  # whether or not it got mounted: that is fine
            shutil.rmtree(work, ignore_errors=True)
            for leftover in (merged, empty):
                with contextlib.suppress(OSError):
                    leftover.rmdir()
