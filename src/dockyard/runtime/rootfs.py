"""A container's writable root: an overlay of snapshot dirs and a fresh upper dir.

Everything the container writes lands in ``upper`` (overlay whiteouts for deletions),
which outlives the mount: the builder packs it into a layer and can register it as the
next snapshot, ``dockyard run`` keeps it for a later commit.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.runtime import interrupts, mounts


@dataclass(frozen=True)
class OverlayRootfs:
    """The directories of a mounted overlay rootfs."""

    merged: Path  # the rootfs to run in
    upper: Path  # what the container changed
    lowers: tuple[Path, ...]  # top first


@contextlib.contextmanager
def overlay_rootfs(lowers: Sequence[Path], state_dir: Path) -> Iterator[OverlayRootfs]:
    """Mount ``lowers`` (top first; none for an empty rootfs) with the upper dir
    ``state_dir/upper`` (created if missing, kept if present) at ``state_dir/merged``.

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
