"""A working container's merged rootfs: mounted for one run, or left mounted for the host.

Left mounted by ``container mount`` until ``container umount``.

The overlay is the runtime's (:mod:`dockyard.runtime.rootfs`, the same options): the
container's snapshots as lower dirs, its own ``upper`` and ``work`` dirs, at ``merged``.
Every caller holds the container's lock (:meth:`.Catalog.locked`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from dockyard.containers.catalog import WorkingContainer
from dockyard.errors import ContainerError
from dockyard.mountinfo import mount_points_under
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.manifest import Manifest
from dockyard.runtime import mounts, syscalls
from dockyard.runtime.rootfs import overlay_rootfs
from dockyard.runtime.snapshots import Snapshots
from dockyard.store import Store


def head_manifest(store: Store, container: WorkingContainer) -> Manifest | None:
    """The image manifest ``container`` stands on (None: scratch)."""
    if container.record.head is None:
        return None
    parsed = store.read_manifest(Descriptor.from_dict(container.record.head))
    if not isinstance(parsed, Manifest):
        raise ContainerError(f"container {container.name}: its image is not an image manifest")
    return parsed


def lowers(store: Store, snapshots: Snapshots, container: WorkingContainer) -> list[Path]:
    """The snapshot dirs under ``container``'s upper dir, top first, held.

    They are made again from the stored layers if something removed them."""
    manifest = head_manifest(store, container)
    return [] if manifest is None else snapshots.prepare(manifest)


@contextlib.contextmanager
def merged(store: Store, snapshots: Snapshots, container: WorkingContainer) -> Iterator[Path]:
    """``container``'s merged rootfs for the ``with`` block.

    The host's mount if it is mounted, else one mounted now and unmounted at the end."""
    if container.record.mounted:
        yield container.merged
        return
    container.upper.mkdir(mode=0o755, exist_ok=True)
    with overlay_rootfs(lowers(store, snapshots, container), container.path) as fs:
        yield fs.merged


def mount(store: Store, snapshots: Snapshots, container: WorkingContainer) -> Path:
    """Mount ``container``'s rootfs at its ``merged`` dir until :func:`unmount`; return it."""
    if container.record.mounted:
        return container.merged
    below = lowers(store, snapshots, container)
    work, empty = container.path / "work", container.path / "empty"
    container.upper.mkdir(mode=0o755, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    container.merged.mkdir(exist_ok=True)
    if not below:
        empty.mkdir(exist_ok=True)
    mounts.mount_overlay(container.merged, below or [empty], container.upper, work)
    container.record.mounted = True
    container.save()
    return container.merged


def unmount(container: WorkingContainer) -> None:
    """Unmount what :func:`mount` mounted.

    Refuse while something on the host still uses it (a shell's working directory, an open file):
    unmounting it lazily would let those write into an upper dir a commit may already have frozen
    into a snapshot."""
    if mount_points_under(container.merged):
        try:
            syscalls.umount2(container.merged, syscalls.UMOUNT_NOFOLLOW)
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise ContainerError(
                    f"container {container.name} is mounted at {container.merged} and in use "
                    "there (a working directory or an open file); leave it and try again"
                ) from None
            raise ContainerError(f"cannot unmount {container.merged}: {e.strerror}") from None
    _tidy(container)
    if container.record.mounted:
        container.record.mounted = False
        container.save()


def unmount_stale(store: Store, container: WorkingContainer) -> None:
    """Unmount the overlay a killed ``container run`` left, after ending its runc container.

    That runc container may still be running, in a session of its own, if nobody reaped it."""
    if not mount_points_under(container.path):
        return
    from dockyard.runtime.container import reap_orphans

    reap_orphans(store.root)
    mounts.unmount_all(container.path)
    _tidy(container)


def _tidy(container: WorkingContainer) -> None:
    shutil.rmtree(container.path / "work", ignore_errors=True)
    for leftover in (container.merged, container.path / "empty"):
        with contextlib.suppress(OSError):
            os.rmdir(leftover)
