"""The working containers of a store: create, find, list, lock, remove.

Names are directory names under ``<store root>/containers``: a container is made whole
in a hidden temp dir and renamed into place with ``RENAME_NOREPLACE``, so two commands
creating the same name cannot both win and a killed create leaves no half container.

A command that changes a container (run, commit, mount, remove) holds its ``lock``
(``flock``, never waiting): a second one is told the container is busy instead of
corrupting it, and a killed holder releases it. Taking the lock also repairs what a
killed command left: a commit half done (finished, see :mod:`.commit`) and a run's
overlay still mounted (its runc container reaped first).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dockyard.containers.record import RECORD_FILE, Record, check_name
from dockyard.errors import ContainerError, NotFound
from dockyard.files.locking import FileLock
from dockyard.oci import digest as digests
from dockyard.oci.config import ImageConfig
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.oci.manifest import Manifest
from dockyard.runtime import syscalls
from dockyard.runtime.snapshots import Snapshots, chain_ids
from dockyard.store import Store, pins, trash
from dockyard.store.store import PINS_DIR

CONTAINERS_DIR = "containers"
LOCK_FILE = "lock"
RUNNING_FILE = "running.json"  # a container running in the background (see .background)
LEFTOVER_SECONDS = 3600
_TEMP = ".tmp-"
_PIN_PREFIX = "container-"


@dataclass
class WorkingContainer:
    """One container: its directory and record."""

    path: Path
    record: Record

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def upper(self) -> Path:
        return self.path / "upper"

    @property
    def merged(self) -> Path:
        return self.path / "merged"

    def save(self) -> None:
        self.record.save(self.path)

    def in_use(self) -> bool:
        """Is a command (a ``container run``, say) holding the container now?"""
        lock = FileLock(self.path / LOCK_FILE)
        if not lock.acquire(blocking=False):
            return True
        lock.release()
        return False


class Catalog:
    """The working containers under the store ``store``."""

    def __init__(self, store: Store):
        self.store = store
        self.root = store.root / CONTAINERS_DIR

    def create(
        self,
        snapshots: Snapshots,
        image: str,
        manifest: Manifest | None,
        name: str | None = None,
        platform: Platform | None = None,
    ) -> WorkingContainer:
        """A new container over the stored image ``manifest`` (None: an empty rootfs).

        Named ``name`` or ``<image>-working-container[-N]`` as buildah names them. ``image`` is how
        the user named the image. Its snapshots are made now."""
        head, chain = None, []
        if manifest is not None:
            config = self.store.read_config(manifest)
            snapshots.prepare(manifest)
            chain = chain_ids(ImageConfig(config).diff_ids)
            head = Descriptor(manifest.media_type, manifest.digest, len(manifest.raw)).to_dict()
            platform = Platform.from_dict(config)
        record = Record(
            id=os.urandom(16).hex(),
            name=check_name(name) if name else "",
            image=image,
            head=head,
            chain=chain,
            platform=(platform or Platform.host()).to_dict(),
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.root / f"{_TEMP}{record.id}"
        temp.mkdir()
        try:
            (temp / "upper").mkdir(mode=0o755)
            self.pin(record, manifest)
            for candidate in [name] if name else _default_names(image):
                record.name = candidate
                record.save(temp)
                if syscalls.rename_noreplace(temp, self.root / candidate):
                    return WorkingContainer(self.root / candidate, record)
            raise ContainerError(f"the container name {name!r} is already in use")
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            pins.unpin(self.store.root / PINS_DIR, _PIN_PREFIX + record.id)
            raise

    def pin(self, record: Record, manifest: Manifest | None, *more: str) -> None:
        """Keep ``record``'s image and snapshots from a prune, and the names ``more`` too.

        The image is ``manifest`` (its blobs); ``more`` are a commit's new blobs and snapshot."""
        names = [digests.hex_part(chain) for chain in record.chain]
        if manifest is not None:
            names += [manifest.digest, manifest.config.digest]
            names += [layer.digest for layer in manifest.layers]
        with self.store.lease():
            pins.pin(self.store.root / PINS_DIR, _PIN_PREFIX + record.id, [*names, *more])

    def get(self, name: str) -> WorkingContainer:
        """The container named ``name`` (or whose id starts with it, 12 digits or more)."""
        if name and not name.startswith(".") and "/" not in name:
            path = self.root / name
            if (path / RECORD_FILE).is_file():
                return WorkingContainer(path, Record.load(path))
            if len(name) >= 12:
                found = [c for c in self.list() if c.record.id.startswith(name)]
                if len(found) == 1:
                    return found[0]
        raise NotFound(f"no such container: {name}")

    def list(self) -> list[WorkingContainer]:
        """Every container, by name."""
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                with contextlib.suppress(ContainerError):
                    found.append(WorkingContainer(Path(entry.path), Record.load(Path(entry.path))))
        return found

    @contextlib.contextmanager
    def locked(self, container: WorkingContainer) -> Iterator[WorkingContainer]:
        """Hold ``container`` for a change, repairing what a killed command left.

        Raise :class:`ContainerError` at once if another command holds it."""
        lock = FileLock(container.path / LOCK_FILE)
        if not lock.acquire(blocking=False):
            if (container.path / RUNNING_FILE).exists():
                raise ContainerError(
                    f"container {container.name} is running in the background: "
                    f"`dockyard container stop {container.name}` first"
                )
            raise ContainerError(
                f"container {container.name} is busy: another dockyard command (a "
                "`container run`?) is using it; try again when it has finished"
            )
        try:
            current = WorkingContainer(container.path, Record.load(container.path))
            self._repair(current)
            yield current
        finally:
            lock.release()

    def _repair(self, container: WorkingContainer) -> None:
        from dockyard.containers import rootfs

        forget_running(container)  # a killed supervisor's: we hold the lock
        if container.record.pending is not None:
            from dockyard.containers import commit  # the builder's modules: ~0.2 s to import

            commit.finish_pending(self, container)
        if not container.record.mounted:
            rootfs.unmount_stale(self.store, container)

    def remove(self, container: WorkingContainer) -> None:
        """Delete ``container`` (unmounted first) and its pins. Hold its lock."""
        from dockyard.containers import rootfs

        rootfs.unmount(container)
        moved = trash.move_to_trash(container.path)
        pins.unpin(self.store.root / PINS_DIR, _PIN_PREFIX + container.record.id)
        if moved is not None:
            trash.remove_tree(moved)

    def remove_leftovers(self) -> int:
        """Delete what killed creates left, an hour old; return how many.

        Only an hour old, since a create may be running: temp dirs, and the pins of no container."""
        count = 0
        cutoff = time.time() - LEFTOVER_SECONDS
        ids = {c.record.id for c in self.list()}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root):
                if entry.name.startswith(_TEMP) and _older(entry, cutoff):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    count += 1
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.store.root / PINS_DIR):
                owner = entry.name.removeprefix(_PIN_PREFIX)
                if (
                    entry.name.startswith(_PIN_PREFIX)
                    and owner not in ids
                    and _older(entry, cutoff)
                ):
                    pins.unpin(self.store.root / PINS_DIR, entry.name)
                    count += 1
        return count


def _older(entry: os.DirEntry, cutoff: float) -> bool:
    with contextlib.suppress(FileNotFoundError):
        return entry.stat(follow_symlinks=False).st_mtime < cutoff
    return False


def _default_names(image: str) -> Iterator[str]:
    """buildah's names: ``<last path part of the image, no tag>-working-container``,
    then with ``-1``, ``-2``..."""
    last = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    base = f"{last}-working-container" if last and last != "scratch" else "working-container"
    base = check_name("".join(c if c.isalnum() or c in "_.-" else "-" for c in base))
    yield base
    for n in range(1, 10_000):
        yield f"{base}-{n}"


def forget_running(container: WorkingContainer) -> None:
    """Delete a killed supervisor's ``running.json``; call it holding the lock."""
    with contextlib.suppress(FileNotFoundError):
        (container.path / RUNNING_FILE).unlink()
