"""Snapshots: each layer of the store extracted once, as an overlay lower dir.

Keyed by chain ID, at ``<store root>/snapshots/<chain id hex>/``.

A snapshot holds only its own layer's diff, in overlay format (see :mod:`.unpack`), so
an image's rootfs is an overlay of its layers' snapshots and nothing is copied per
container. The key is the OCI chain ID, which names a layer *with everything below
it*: ``ChainID(L0) = DiffID(L0)``, ``ChainID(Ln) = sha256(ChainID(Ln-1) + " " +
DiffID(Ln))``. So two images sharing their bottom layers share those snapshots.

Writes are atomic and safe between processes: a snapshot is extracted into a temp dir
beside it and renamed into place, under a per-snapshot lock so that a second builder
wanting the same snapshot waits for the first and uses its work. A temp dir left by a
killed process is removed by the next one taking that lock, or by a prune.

Snapshots are not synced one by one: a new one is marked unsynced before it is renamed
into place (:mod:`dockyard.files.unsynced`), so one a crash may have damaged is made
again from its layer blob on first use; a prune syncs once and drops the markers.

Pruning (:meth:`Snapshots.prune`) deletes the snapshots of layers no named image has,
under the store's GC lock. What a :class:`Snapshots` object uses -- the snapshots it
prepared or committed, its scratch dirs -- it *holds* (:mod:`dockyard.store.holds`)
while it lives, so a prune spares the lower dirs of a running build, container or
pipeline. Holds are taken under the store's
lease, in the same step that checks or makes the snapshot, so a prune never slips in
between. Per-snapshot locks and lock files are only opened under that lease too.

Layout of ``<store root>/snapshots/``::

    <chain id hex>/     a snapshot
    .locks/<hex>        its lock, held while it is made or deleted
    .unsynced/<hex>     the boot ID when it was made, until a prune syncs it to disk
    .holds/<id>         what a live process holds (see :mod:`dockyard.store.holds`)
    .tmp-<hex>-*/       a snapshot being extracted
    .scratch-*/         an overlay's upper, work and merged dirs (see :meth:`scratch`)
    .trash-*/           a tree being deleted (see :mod:`dockyard.store.trash`)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.errors import ContainerError, ManifestError
from dockyard.files.locking import FileLock
from dockyard.files.unsynced import UnsyncedMarkers
from dockyard.oci import digest as digests
from dockyard.oci import mediatypes as mt
from dockyard.oci.config import ImageConfig
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.manifest import Manifest
from dockyard.runtime import interrupts, mounts, syscalls
from dockyard.store import Store, trash
from dockyard.store.holds import Hold, held_names
from dockyard.store.pins import pinned_names
from dockyard.store.store import PINS_DIR

if TYPE_CHECKING:  # the collector: only for a prune, not every container command
    from dockyard.store.gc import PruneResult

SNAPSHOTS_DIR = "snapshots"
_TEMP = ".tmp-"
_SCRATCH = ".scratch-"
_LOCKS = ".locks"
_HOLDS = ".holds"
_UNSYNCED = ".unsynced"
_SNAPSHOT_NAME = re.compile(r"^(?:[a-f0-9]{64}|[a-f0-9]{128})$")  # a chain ID's hex


def chain_id(parent: str | None, diff_id: str) -> str:
    """The chain ID of a layer with diff ID ``diff_id`` on the chain ``parent``."""
    digests.validate(diff_id)
    if parent is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """The chain ID of every layer, bottom first, given their diff IDs bottom first."""
    chain: list[str] = []
    for diff_id in diff_ids:
        chain.append(chain_id(chain[-1] if chain else None, diff_id))
    return chain


class Snapshots:
    """The snapshot dirs of the store ``store``, and this user's hold on those it uses.

    The hold lasts until :meth:`close` (or the end of the ``with`` block), until the
    object is garbage collected, or until the process ends: keep the object while its
    dirs are mounted.
    """

    def __init__(self, store: Store):
        self.store = store
        self.root = store.root / SNAPSHOTS_DIR
        self._hold = Hold(self.root / _HOLDS)
        self._unsynced = UnsyncedMarkers(self.root / _UNSYNCED)

    def close(self) -> None:
        """Stop holding what this object used: a prune may take it from now on."""
        self._hold.release()

    def __enter__(self) -> Snapshots:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, chain: str) -> Path:
        """Where the snapshot ``chain`` lives (whether or not it exists)."""
        return self.root / digests.hex_part(chain)

    def exists(self, chain: str) -> bool:
        """Is the snapshot there, and whole (not made before a crash and lost with it)?"""
        return self.path(chain).is_dir() and self._unsynced.whole(digests.hex_part(chain))

    def _replace_partial(self, hex_id: str) -> None:
        """Move a snapshot left incomplete by a crash out of the way. Hold its lock."""
        if self._unsynced.whole(hex_id):
            return
        if moved := trash.move_to_trash(self.root / hex_id):  # None: not there
            trash.remove_tree(moved)

    def prepare(self, manifest: Manifest) -> list[Path]:
        """Make sure every layer of the stored image ``manifest`` has its snapshot.

        Return the lower dirs for an overlay of it, top layer first.

        Layers are read from the store and checked against the config's diff IDs.
        """
        diff_ids = ImageConfig(self.store.read_config(manifest)).diff_ids
        if len(diff_ids) != len(manifest.layers):
            raise ManifestError(
                f"config {manifest.config.digest}: rootfs.diff_ids does not match the "
                f"{len(manifest.layers)} layers of manifest {manifest.digest}"
            )
        return self.ensure(manifest.layers, diff_ids)

    def ensure(self, layers: Sequence[Descriptor], diff_ids: Sequence[str]) -> list[Path]:
        """Make sure the stack ``layers`` has its snapshots, and hold them; return the lower dirs.

        ``layers`` come bottom first, blobs in the store, with their ``diff_ids``; the lower dirs
        come top layer first."""
        chains = chain_ids(diff_ids)
        if not self._holds_existing(chains):
            with self.store.lease():  # a prune waits until they are held and made
                self._hold.add(digests.hex_part(chain) for chain in chains)
                for layer, diff_id, chain in zip(layers, diff_ids, chains, strict=True):
                    if not self.exists(chain):
                        self._extract(chain, layer, diff_id)
        return [self.path(chain) for chain in reversed(chains)]

    def lowers(self, chains: Sequence[str]) -> list[Path]:
        """The lower dirs of existing snapshots ``chains``, top first; held from now on.

        ``chains`` come bottom first."""
        if not self._holds_existing(chains):
            with self.store.lease():
                self._hold.add(digests.hex_part(chain) for chain in chains)
        for chain in chains:
            if not self.exists(chain):
                raise ContainerError(f"snapshot {chain} does not exist in {self.root}")
        return [self.path(chain) for chain in reversed(chains)]

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        """A temp dir on the snapshots' filesystem, held, and removed on exit.

        The place for an overlay's upper dir that :meth:`commit` may then take."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.store.lease():  # a prune would take it for a killed process's
            path = Path(tempfile.mkdtemp(prefix=_SCRATCH, dir=self.root))
            self._hold.add([path.name])
        try:
            yield path
        finally:
            with interrupts.deferred():
                mounts.remove_tree(path)

    def commit(self, upper: Path, chain: str) -> Path:
        """Make the (unmounted) overlay upper dir ``upper`` the snapshot ``chain``; return its path.

        It is renamed: no copy, no re-extraction. If that snapshot exists already (another build
        made it), ``upper`` is deleted and the existing one kept. Either way it is held.

        ``upper`` must be on the snapshots' filesystem (see :meth:`scratch`) and must
        hold exactly the layer that has ``chain`` as its chain ID. It is marked unsynced
        (see the module doc), not synced.
        """
        target = self.path(chain)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / _LOCKS).mkdir(exist_ok=True)
        try:
            with self.store.lease(), FileLock(self.root / _LOCKS / target.name):
                self._hold.add([target.name])
                self._replace_partial(target.name)
                if not target.exists():
                    self._unsynced.mark(target.name)
                taken = syscalls.rename_noreplace(upper, target)
            if not taken:
                shutil.rmtree(upper)
        except OSError as e:
            raise ContainerError(f"cannot make {upper} snapshot {chain}: {e.strerror}") from None
        return target

    def holding(self, chain: str) -> Path | None:
        """The snapshot ``chain`` if it exists, held from now on (a prune spares it)."""
        with self.store.lease():
            if not self.exists(chain):
                return None
            self._hold.add([digests.hex_part(chain)])
        return self.path(chain)

    def prune(self, *, wait: bool = True) -> PruneResult:
        """Delete the snapshots no named image needs, and what killed processes left.

        The snapshots of layers that no named image in the store has go (as :meth:`.Store.prune`
        deletes their blobs), unless a live process holds them, a record pins them
        (:mod:`dockyard.store.pins`: a working container's) or one is being made. Also what
        killed processes left: extraction temps, scratch dirs (unmounting what is still mounted
        there), half-deleted trees.

        Returns the chain IDs removed, the bytes freed and the leftovers reaped. Runs
        under the store's GC lock (``wait`` as for :meth:`.Store.gc_lock`); the trees
        are only renamed under it, and deleted after it is released.
        """
        from dockyard.store.gc import PruneResult

        result = PruneResult()
        if not self.store.layout.exists() or not self.root.is_dir():
            return result
        doomed: list[Path] = []
        with self.store.gc_lock(wait=wait):
            pinned = pinned_names(self.store.root / PINS_DIR)  # working containers'
            spared = (
                held_names(self.root / _HOLDS)
                | pinned
                | {
                    digests.hex_part(chain)
                    for stack in self.store.image_diff_ids()
                    for chain in chain_ids(stack)
                }
            )
            (self.root / _LOCKS).mkdir(exist_ok=True)
            for entry in list(os.scandir(self.root)):
                name, path = entry.name, Path(entry.path)
                if _SNAPSHOT_NAME.match(name):
                    if name not in spared and (gone := self._discard(path, name)):
                        doomed.append(gone)
                        result.removed.append(f"sha{len(name) * 4}:{name}")
                elif name.startswith(_TEMP):
                    hex_id = name.removeprefix(_TEMP).partition("-")[0]
                    if gone := self._discard(path, hex_id):
                        doomed.append(gone)
                        result.temps += 1
                elif trash.is_trash(name):
                    doomed.append(path)  # a killed prune's: finish it
                    result.temps += 1
            scratch = self._discard_scratch(spared)
            result.temps += len(scratch)
            doomed += scratch
            self._remove_unused_locks()
            self._unsynced.settle(lambda name: (self.root / name).is_dir())
        for path in doomed:
            result.freed += trash.remove_tree(path)
        return result

    def reap_scratch(self) -> int:
        """Delete only the scratch dirs killed processes left; return how many went.

        What is still mounted there is unmounted; a live process holds its own."""
        if not self.root.is_dir():
            return 0
        with self.store.gc_lock():
            doomed = self._discard_scratch(held_names(self.root / _HOLDS))
        for path in doomed:
            trash.remove_tree(path)
        return len(doomed)

    def _discard_scratch(self, spared: Collection[str]) -> list[Path]:
        """Move the scratch dirs not ``spared`` (held by a live process) to the trash,
        unmounting what a dead process left mounted there; return where they went.
        Under the GC lock."""
        doomed = []
        for entry in list(os.scandir(self.root)):
            if entry.name.startswith(_SCRATCH) and entry.name not in spared:
                path = Path(entry.path)
                mounts.unmount_all(path)
                if gone := trash.move_to_trash(path):
                    doomed.append(gone)
        return doomed

    def _holds_existing(self, chains: Sequence[str]) -> bool:
        """Do we hold every one of ``chains`` already, and do they exist?"""
        return all(digests.hex_part(c) in self._hold and self.exists(c) for c in chains)

    def _discard(self, path: Path, hex_id: str) -> Path | None:
        """Move ``path`` (the snapshot ``hex_id`` or one of its temps) to the trash, unless
        its lock is held (it is being made); return where it went."""
        lock = FileLock(self.root / _LOCKS / hex_id)
        if not lock.acquire(blocking=False):
            return None
        try:
            return trash.move_to_trash(path)
        finally:
            lock.release()

    def _remove_unused_locks(self) -> None:
        """Delete the lock files of snapshots that are gone. Only under the GC lock:
        nobody has them open then (they are opened under a lease)."""
        try:
            entries = list(os.scandir(self.root / _LOCKS))
        except FileNotFoundError:
            return
        for entry in entries:
            if (self.root / entry.name).exists():
                continue
            lock = FileLock(Path(entry.path))
            if lock.acquire(blocking=False):
                try:
                    os.unlink(entry.path)
                finally:
                    lock.release()

    def _extract(self, chain: str, layer: Descriptor, diff_id: str) -> None:
        # Imported here: a container start with its snapshots ready needs neither.
        from dockyard.layers.compression import open_decompressed
        from dockyard.runtime.unpack import unpack_layer

        if layer.media_type not in mt.LAYERS or layer.media_type == mt.DOCKER_LAYER_FOREIGN_GZIP:
            raise ManifestError(f"layer {layer.digest}: cannot extract a {layer.media_type}")
        hex_id = digests.hex_part(chain)
        (self.root / _LOCKS).mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / _LOCKS / hex_id):
            if self.exists(chain):
                return  # another process made it while we waited
            for stale in self.root.glob(f"{_TEMP}{hex_id}-*"):
                shutil.rmtree(stale, ignore_errors=True)  # only the lock holder extracts
            self._replace_partial(hex_id)
            temp = Path(tempfile.mkdtemp(prefix=f"{_TEMP}{hex_id}-", dir=self.root))
            try:
                temp.chmod(0o755)
                with (
                    self.store.blobs.open(layer.digest, layer.size) as blob,
                    open_decompressed(blob) as tar,
                ):
                    unpack_layer(
                        digests.VerifyingReader(tar, diff_id), temp, name=f"layer {layer.digest}"
                    )
                self._unsynced.mark(hex_id)
                if not syscalls.rename_noreplace(temp, self.path(chain)):
                    shutil.rmtree(temp)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
