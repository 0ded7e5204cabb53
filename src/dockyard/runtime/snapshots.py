"""Snapshots: each layer of the store extracted once, as an overlay lower dir keyed by
chain ID, at ``<store root>/snapshots/<chain id hex>/``.

A snapshot holds only its own layer's diff, in overlay format (see :mod:`.unpack`), so
an image's rootfs is an overlay of its layers' snapshots and nothing is copied per
container. The key is the OCI chain ID, which names a layer *with everything below
it*: ``ChainID(L0) = DiffID(L0)``, ``ChainID(Ln) = sha256(ChainID(Ln-1) + " " +
DiffID(Ln))``. So two images sharing their bottom layers share those snapshots.

Writes are atomic, durable and safe between processes: a snapshot is extracted into a
temp dir beside it, synced, and renamed into place (``RENAME_NOREPLACE``), under a
per-snapshot lock so that a second builder wanting the same snapshot waits for the
first and uses its work. A temp dir left by a killed process is removed by the next
one taking that lock.

Nothing deletes snapshots yet: pruning them belongs with the store's GC (it must spare
those in use by a running container or build).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from dockyard.errors import ContainerError, ManifestError
from dockyard.layout.locking import FileLock
from dockyard.oci import digest as digests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.manifest import Manifest
from dockyard.runtime import interrupts, mounts, syscalls
from dockyard.store import Store

SNAPSHOTS_DIR = "snapshots"
_TEMP = ".tmp-"
_SCRATCH = ".scratch-"
_LOCKS = ".locks"


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
    """The snapshot dirs of the store ``store``."""

    def __init__(self, store: Store):
        self.store = store
        self.root = store.root / SNAPSHOTS_DIR

    def path(self, chain: str) -> Path:
        """Where the snapshot ``chain`` lives (whether or not it exists)."""
        return self.root / digests.hex_part(chain)

    def exists(self, chain: str) -> bool:
        return self.path(chain).is_dir()

    def prepare(self, manifest: Manifest) -> list[Path]:
        """Make sure every layer of the stored image ``manifest`` has its snapshot;
        return the lower dirs for an overlay of it, top layer first.

        Layers are read from the store and checked against the config's diff IDs.
        """
        config = self.store.read_config(manifest)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids")
        if not isinstance(diff_ids, list) or len(diff_ids) != len(manifest.layers):
            raise ManifestError(
                f"config {manifest.config.digest}: rootfs.diff_ids does not match the "
                f"{len(manifest.layers)} layers of manifest {manifest.digest}"
            )
        return self.ensure(manifest.layers, diff_ids)

    def ensure(self, layers: Sequence[Descriptor], diff_ids: Sequence[str]) -> list[Path]:
        """Make sure the stack ``layers`` (bottom first, blobs in the store, with their
        ``diff_ids``) has its snapshots; return the lower dirs, top layer first."""
        chains = chain_ids(diff_ids)
        missing = [
            (layer, diff_id, chain)
            for layer, diff_id, chain in zip(layers, diff_ids, chains, strict=True)
            if not self.exists(chain)
        ]
        if missing:
            with self.store.lease():  # a prune waits until the layers are read
                for layer, diff_id, chain in missing:
                    self._extract(chain, layer, diff_id)
        return [self.path(chain) for chain in reversed(chains)]

    def lowers(self, chains: Sequence[str]) -> list[Path]:
        """The lower dirs of existing snapshots ``chains`` (bottom first), top first."""
        paths = [self.path(chain) for chain in reversed(chains)]
        for chain, path in zip(reversed(chains), paths, strict=True):
            if not path.is_dir():
                raise ContainerError(f"snapshot {chain} does not exist in {self.root}")
        return paths

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        """A temp dir on the snapshots' filesystem, removed on exit: the place for an
        overlay's upper dir that :meth:`commit` may then take."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=_SCRATCH, dir=self.root))
        try:
            yield path
        finally:
            with interrupts.deferred():
                mounts.remove_tree(path)

    def commit(self, upper: Path, chain: str) -> Path:
        """Make the (unmounted) overlay upper dir ``upper`` the snapshot ``chain``, by
        renaming it: no copy, no re-extraction. If that snapshot exists already (another
        build made it), ``upper`` is deleted and the existing one kept. Return its path.

        ``upper`` must be on the snapshots' filesystem (see :meth:`scratch`) and must
        hold exactly the layer that has ``chain`` as its chain ID. It is synced to disk
        first: overlays are mounted ``volatile``, and a snapshot outlives crashes.
        """
        target = self.path(chain)
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            syscalls.syncfs(upper)
            if not syscalls.rename_noreplace(upper, target):
                shutil.rmtree(upper)
        except OSError as e:
            raise ContainerError(f"cannot make {upper} snapshot {chain}: {e.strerror}") from None
        return target

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
            temp = Path(tempfile.mkdtemp(prefix=f"{_TEMP}{hex_id}-", dir=self.root))
            try:
                temp.chmod(0o755)
                with (
                    self.store.blobs.open(layer.digest, layer.size) as blob,
                    open_decompressed(blob) as tar,
                ):
                    unpack_layer(digests.VerifyingReader(tar, diff_id), temp)
                syscalls.syncfs(temp)  # on disk before it is visible under its name
                if not syscalls.rename_noreplace(temp, self.path(chain)):
                    shutil.rmtree(temp)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
