"""The images a run's containers start from: in the store, pulled on first use.

An image built by an earlier step is in the store under its tag, so it is found like
any other. Within a run, one image is pulled once even when parallel steps want it at
the same moment.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import NotFound
from dockyard.reference import Reference
from dockyard.runtime import Snapshots, overlay_rootfs
from dockyard.store import Store
from dockyard.transfer.pull import ensure_image

if TYPE_CHECKING:
    from dockyard.registry.client import CredentialScope


@dataclass(frozen=True)
class Image:
    """A stored image ready to run: its config and its snapshot dirs (top first)."""

    ref: Reference
    config: dict[str, Any]
    lowers: list[Path]


class Images:
    """The images of one store, as one run uses them; pulled with ``credentials`` only
    (default: anonymously), never with the host's logins unless those allow it."""

    def __init__(self, store: Store, credentials: CredentialScope | None = None):
        from dockyard.registry.client import CredentialScope

        self.store = store
        self.credentials = credentials or CredentialScope(host_credentials=False)
        self.snapshots = Snapshots(store)
        self._lock = threading.Lock()
        self._pulling: dict[Reference, threading.Lock] = {}

    def get(self, ref: Reference, note: Callable[[str], None]) -> Image:
        """The image ``ref``, pulled into the store if missing (``note`` hears of it),
        with its snapshots made."""
        with self._lock:
            lock = self._pulling.setdefault(ref, threading.Lock())
        with lock, self.credentials.active():
            descriptor = ensure_image(self.store, ref, note=note)
        manifest = self.store.image_manifest(descriptor)
        if manifest is None:
            raise NotFound(f"image {ref} has no image for this platform in the store")
        return Image(ref, self.store.read_config(manifest), self.snapshots.prepare(manifest))

    @contextlib.contextmanager
    def rootfs(self, image: Image) -> Iterator[Path]:
        """A fresh writable rootfs of ``image`` for the block; gone afterwards."""
        with self.snapshots.scratch() as scratch, overlay_rootfs(image.lowers, scratch) as fs:
            yield fs.merged
