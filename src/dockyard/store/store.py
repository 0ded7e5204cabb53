"""The local image store: an OCI image layout at the store root, named by full references.

``<root>/index.json`` holds one entry per name, annotated with the full reference
(``org.opencontainers.image.ref.name = docker.io/library/busybox:latest``, or
``name@digest`` for an image pulled by digest only), so ``skopeo`` and ``umoci`` can read
the store as they read any layout. ``<root>/tmp/`` holds blobs being written (and the
work dirs of other writers, such as a build's secret files).

Concurrency: ``index.json`` is rewritten under its lock file; blobs are written before
the name that keeps them, under a *lease* (a shared lock on ``<root>/gc.lock``) which
:meth:`Store.prune` waits for (it takes the lock exclusively, :meth:`Store.gc_lock`), so
it never deletes the blobs of a pull in progress. Snapshots (``<root>/snapshots/``) are
made under a lease too and pruned under the same lock (see :mod:`dockyard.store.holds`).

Durability: blobs are not fsynced one by one but marked unsynced in ``<root>/unsynced/``
(:mod:`dockyard.files.unsynced`); after a crash, a blob that may have lost data counts
as absent, so the next pull fetches it again. ``index.json`` is fsynced; a prune syncs
once and drops the markers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard import reference
from dockyard.errors import DockyardError, InvalidReference, ManifestError, NotFound, StoreError
from dockyard.files.blobdir import STALE_TEMP_SECONDS
from dockyard.files.locking import FileLock
from dockyard.files.unsynced import UnsyncedMarkers
from dockyard.frozen import Frozen
from dockyard.layout.oci_dir import LayoutImageSource, OCILayout, ref_name
from dockyard.oci import manifest as manifests
from dockyard.oci.config import ImageConfig
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.reference import Reference

if TYPE_CHECKING:  # imported by the methods that write, hold or collect (not to list)
    from dockyard.store import gc
    from dockyard.store.holds import Hold
    from dockyard.store.home import StoreDestination

GC_LOCK_FILE = "gc.lock"
BLOB_HOLDS_DIR = "holds/blobs"
PINS_DIR = "pins"  # what records on disk keep from a prune (see dockyard.store.pins)
TMP_DIR = "tmp"
UNSYNCED_DIR = "unsynced"  # blobs not synced to disk yet (see dockyard.files.unsynced)
MAX_CONFIG_SIZE = 16 << 20


def default_root() -> Path:
    """``$DOCKYARD_ROOT``, else /var/lib/dockyard as root, else ~/.local/share/dockyard."""
    if env := os.environ.get("DOCKYARD_ROOT"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/dockyard")
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "dockyard"


def as_store(store: Store | str | Path | None) -> Store:
    """``store`` itself, or the store at that root (:func:`default_root` if None).

    This is how the library's verbs read their ``store`` argument.
    """
    return store if isinstance(store, Store) else Store(None if store is None else Path(store))


def ref_key(ref: Reference) -> str:
    """The name a reference has in the store: ``host/repo:tag``, else ``host/repo@digest``."""
    if ref.tag:
        return f"{ref.name}:{ref.tag}"
    if ref.digest:
        return f"{ref.name}@{ref.digest}"
    raise InvalidReference(f"{ref}: a stored image needs a tag or a digest")


class ImageInfo(Frozen):
    """One named image, as ``dockyard images`` lists it."""

    __slots__ = ("created", "descriptor", "image_id", "ref", "size")
    ref: Reference
    descriptor: Descriptor
    image_id: str  # the config digest, as docker reports it
    created: datetime | None
    size: int  # bytes of the stored blobs (compressed layers, config, manifest)

    def __init__(
        self,
        ref: Reference,
        descriptor: Descriptor,
        image_id: str,
        created: datetime | None,
        size: int,
    ) -> None:
        self._set(ref=ref, descriptor=descriptor, image_id=image_id, created=created, size=size)


class Store:
    """The image store at ``root`` (:func:`default_root` if None); created on first write."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.layout = OCILayout(
            self.root,
            tmp_dir=self.root / TMP_DIR,
            unsynced=UnsyncedMarkers(self.root / UNSYNCED_DIR),
        )
        self.blobs = self.layout.blobs

    # names

    def resolve(self, ref: Reference) -> Descriptor:
        """The manifest ``ref`` names: by digest if it is pinned, else by tag."""
        if ref.digest:
            if not self.blobs.has(ref.digest):
                raise NotFound(f"image {ref} not found in store {self.root}")
            raw = self.layout.read_manifest(ref.digest)
            return Descriptor(raw.media_type, ref.digest, len(raw.data))
        key = ref_key(ref)
        for entry in self.layout.index().manifests:
            if ref_name(entry) == key:
                return entry
        raise NotFound(f"image {ref} not found in store {self.root}")

    def tag(self, ref: Reference, desc: Descriptor) -> None:
        """Name the stored manifest ``desc`` ``ref`` (moving the name if it existed)."""
        if ref.digest and ref.digest != desc.digest:
            raise ManifestError(f"{ref}: cannot name manifest {desc.digest} by another digest")
        self.layout.ensure()
        with self.lease():
            if not self.blobs.has(desc.digest):
                raise NotFound(f"manifest {desc.digest} not found in store {self.root}")
            self.layout.set_name(ref_key(ref), desc)

    def untag(self, ref: Reference) -> None:
        """Remove the name ``ref`` (its blobs stay until :meth:`prune`)."""
        if not self.layout.remove_name(ref_key(ref)):
            raise NotFound(f"image {ref} not found in store {self.root}")

    def images(self) -> list[ImageInfo]:
        """Every named image, in the order they were first named."""
        infos = []
        for entry in self.layout.index().manifests:
            name = ref_name(entry)
            if not name or "/" not in name:
                continue  # an entry another tool wrote, unnamed or with a bare tag
            try:
                ref = reference.parse(name, default_tag=False)
            except InvalidReference:
                continue
            manifest = self.image_manifest(entry)
            config = self.read_config(manifest) if manifest else {}
            infos.append(
                ImageInfo(
                    ref,
                    entry,
                    manifest.config.digest if manifest else entry.digest,
                    _created(config),
                    entry.size + (sum(b.size for b in manifest.blobs) if manifest else 0),
                )
            )
        return infos

    # reading and writing images

    def source(self, ref: Reference) -> LayoutImageSource:
        """Read the image ``ref`` names."""
        return LayoutImageSource(self.layout, self.resolve(ref))

    def destination(self, ref: Reference) -> StoreDestination:
        """Write an image named ``ref`` at commit; holds a lease until then."""
        from dockyard.store.home import StoreDestination

        ref_key(ref)  # fail now, not after the copy, if ref cannot name an image
        self.layout.ensure()
        return StoreDestination(self, ref)

    def read_manifest(self, desc: Descriptor) -> manifests.Manifest | manifests.Index:
        raw = self.layout.read_manifest(desc.digest, desc.size, desc.media_type)
        return manifests.parse(raw.data, raw.media_type, f"manifest {desc.digest}")

    def image_manifest(
        self, desc: Descriptor, platform: Platform | None = None
    ) -> manifests.Manifest | None:
        """The image manifest ``desc`` stands for on ``platform`` (default: the host).

        That is ``desc`` itself, or its index's child if stored; None if no such child is
        stored.
        """
        parsed = self.read_manifest(desc)
        if isinstance(parsed, manifests.Manifest):
            return parsed
        try:
            child = parsed.select(platform or Platform.host())
        except ManifestError:
            return None
        if not self.blobs.has(child.digest):
            return None
        result = self.read_manifest(child)
        return result if isinstance(result, manifests.Manifest) else None

    def read_config(self, manifest: manifests.Manifest) -> dict[str, Any]:
        """An image's config document, verified and parsed."""
        return self._config_document(manifest.config)

    def _config_document(self, config: Descriptor) -> dict[str, Any]:
        if config.size > MAX_CONFIG_SIZE:
            raise ManifestError(f"config {config.digest}: {config.size} bytes is too big")
        return manifests.parse_config(
            self.blobs.read_bytes(config.digest, config.size), f"config {config.digest}"
        )

    # garbage collection

    def lease(self) -> FileLock:
        """A shared lock that keeps :meth:`prune` away while held.

        Hold it from writing the first blob of an image until the image is named.
        Creates the store.
        """
        self.layout.ensure()
        return FileLock(self.root / GC_LOCK_FILE, shared=True)

    def blob_hold(self) -> Hold:
        """A hold on blobs no image names yet, which a prune then spares.

        A build holds its layers so until it names its image. Write each blob and add it
        under :meth:`lease`.
        """
        from dockyard.store.holds import Hold

        return Hold(self.root / BLOB_HOLDS_DIR)

    @contextlib.contextmanager
    def gc_lock(self, *, wait: bool = True) -> Iterator[None]:
        """Hold every lease off for the block: what a prune holds while it decides.

        It is the lock :meth:`lease` shares, taken exclusively.

        Waits until no lease is held, or raises :class:`StoreError` if ``wait`` is False.
        """
        lock = FileLock(self.root / GC_LOCK_FILE)
        if not lock.acquire(blocking=wait):
            raise StoreError(f"store {self.root} is busy: an image is being written")
        try:
            yield
        finally:
            lock.release()

    def prune(
        self,
        *,
        wait: bool = True,
        keep: Collection[str] = (),
        only: Collection[str] | None = None,
    ) -> gc.PruneResult:
        """Delete the blobs nothing needs, and abandoned temp files and dirs.

        A blob goes when no named image reaches it, no live process holds it and no
        record pins it (:mod:`.pins`: a working container's image). A prune policy
        (:mod:`dockyard.disk.prune`) spares more (``keep``: the layers of the build cache
        it keeps) or deletes only some (``only``).

        Runs under :meth:`gc_lock` (``wait`` as there). Snapshots are pruned by
        :meth:`.Snapshots.prune`.
        """
        from dockyard.store import gc
        from dockyard.store.holds import held_names
        from dockyard.store.pins import pinned_names

        if not self.layout.exists():
            return gc.PruneResult()
        with self.gc_lock(wait=wait):
            held = held_names(self.root / BLOB_HOLDS_DIR) | pinned_names(self.root / PINS_DIR)
            result = gc.sweep(self.layout, held | set(keep), only)
            self.blobs.settle()
        stale = gc.remove_stale_dirs(self.root / TMP_DIR, STALE_TEMP_SECONDS)
        result.freed += stale.freed
        result.temps += stale.temps
        return result

    def image_diff_ids(self) -> list[list[str]]:
        """The layer diff IDs (bottom first) of every image the names reach.

        Each platform of an index is included: these are the layer stacks whose
        snapshots a prune keeps.

        Call it under :meth:`gc_lock` for an answer that stays true. Raise
        :class:`StoreError` if a manifest or config cannot be read.
        """
        from dockyard.store import gc

        stacks = []
        for config in gc.image_configs(self.layout):
            if not self.blobs.has(config.digest):
                continue  # not an image we can have snapshots of
            try:
                doc = self._config_document(config)
            except DockyardError as e:
                raise StoreError(f"cannot prune {self.root}: {e}") from None
            stacks.append(list(ImageConfig(doc).diff_ids))  # parse_config checked them
        return stacks


def _created(config: dict[str, Any]) -> datetime | None:
    text = ImageConfig(config).created
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
