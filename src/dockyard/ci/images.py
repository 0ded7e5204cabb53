"""The images a run's containers start from: in the store, pulled on first use.

An image a build step of the run made is the run's own: the store names it
``localhost/dockyard-ci/<run id>:<step>`` (:func:`run_name`), never by the tags the
pipeline gives it, and the run looks those tags up among its own builds first
(:meth:`Images.built`). So two runs at once, each building ``app:ci``, each test their
own, and nothing another run builds or tags replaces an image under a run. The run's
names go when it ends (:meth:`Images.forget_built`; ``ci prune`` for a killed run);
the tags reach the store or a registry only when the pipeline asks (``keep``, ``push``).

Within a run, one image is pulled once even when parallel steps want it at the same
moment.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import NotFound
from dockyard.frozen import Frozen
from dockyard.oci.descriptor import Descriptor
from dockyard.reference import Reference
from dockyard.runtime import Snapshots, scratch_rootfs, stored_image
from dockyard.store import Store
from dockyard.transfer.pull import ensure_image

if TYPE_CHECKING:
    from dockyard.registry.client import CredentialScope

RUN_REGISTRY = "localhost"
RUN_REPOSITORY = "dockyard-ci"  # then /<run id>


def run_name(run_id: str, step: str) -> Reference:
    """The store's name for the image the build step ``step`` of run ``run_id`` made."""
    return Reference(RUN_REGISTRY, f"{RUN_REPOSITORY}/{run_id}", tag=step)


def run_of(ref: Reference) -> str | None:
    """The run id in a :func:`run_name`, or None for any other name."""
    prefix = f"{RUN_REPOSITORY}/"
    if ref.registry == RUN_REGISTRY and ref.repository.startswith(prefix):
        return ref.repository[len(prefix) :]
    return None


class Image(Frozen):
    """A stored image ready to run: its config and its snapshot dirs (top first)."""

    __slots__ = ("config", "lowers", "ref")
    ref: Reference
    config: dict[str, Any]
    lowers: list[Path]

    def __init__(self, ref: Reference, config: dict[str, Any], lowers: list[Path]):
        self._set(ref=ref, config=config, lowers=lowers)


class Images:
    """The images of one store, as one run uses them.

    Pulled with ``credentials`` only (default: anonymously), never with the host's logins unless
    those allow it."""

    def __init__(self, store: Store, credentials: CredentialScope | None = None):
        from dockyard.registry.client import CredentialScope

        self.store = store
        self.credentials = credentials or CredentialScope(host_credentials=False)
        self.snapshots = Snapshots(store)
        self._lock = threading.Lock()
        self._pulling: dict[Reference, threading.Lock] = {}
        self._built: dict[Reference, Reference] = {}  # a tag -> the run's name for it
        self._names: list[Reference] = []  # every run name given, to forget at the end

    def built(self, name: Reference, tags: list[Reference]) -> Descriptor:
        """Record that the run's image ``name`` answers to ``tags`` in this run.

        ``name`` is a :func:`run_name`. Return its descriptor."""
        descriptor = self.store.resolve(name)
        with self._lock:
            self._names.append(name)
            self._built.update((tag, name) for tag in tags)
        return descriptor

    def stored_name(self, ref: Reference) -> Reference:
        """Where the store keeps ``ref`` for this run: its own build's name first."""
        with self._lock:
            return self._built.get(ref, ref)

    def forget_built(self) -> None:
        """Remove the store's names of the run's images (their blobs go at a prune)."""
        with self._lock:
            names, self._names = self._names, []
        for name in names:
            with contextlib.suppress(NotFound):
                self.store.untag(name)

    def get(self, ref: Reference, note: Callable[[str], None]) -> Image:
        """The image ``ref``, pulled into the store if missing, with its snapshots made.

        It may be one the run built first; ``note`` hears of a pull."""
        stored = self.stored_name(ref)
        with self._pull_lock(stored), self.credentials.active():
            image = stored_image(self.store, stored, note=note)
        return Image(ref, image.config, self.snapshots.prepare(image.manifest))

    def pull(self, ref: Reference, note: Callable[[str], None]) -> tuple[Reference, Descriptor]:
        """The store's name for ``ref`` in this run and its descriptor, pulled first if missing.

        Pulled once, however many steps want it at the same moment."""
        stored = self.stored_name(ref)
        with self._pull_lock(stored), self.credentials.active():
            return stored, ensure_image(self.store, stored, note=note)

    def _pull_lock(self, stored: Reference) -> threading.Lock:
        """The lock that makes one pull of ``stored`` serve every step wanting it."""
        with self._lock:
            return self._pulling.setdefault(stored, threading.Lock())

    @contextlib.contextmanager
    def rootfs(self, image: Image) -> Iterator[Path]:
        """A fresh writable rootfs of ``image`` for the block; gone afterwards."""
        with scratch_rootfs(self.snapshots, image.lowers) as fs:
            yield fs.merged
