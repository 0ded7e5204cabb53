"""The content a path has in the finished image, followed across layers as they stream.

Checks that judge the image as it runs, not each layer (the user in ``/etc/passwd``,
the package databases), keep only the last version of the few files they read: a later
layer's file replaces it, and a whiteout (of it or a parent dir) or an opaque parent
dir in a later layer deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.check.image import Layer
from dockyard.layers.walk import FILE, OPAQUE, WHITEOUT, Entry


@dataclass
class Version:
    layer: Layer
    content: bytes


class LatestFiles:
    """The last version of each path in ``paths``, up to ``limit`` bytes of each."""

    def __init__(self, paths: tuple[str, ...], limit: int):
        self.paths = paths
        self.limit = limit
        self.versions: dict[str, Version] = {}

    def entry(self, layer: Layer, entry: Entry) -> None:
        for path in self.paths:
            self._follow(path, layer, entry)

    def _follow(self, path: str, layer: Layer, entry: Entry) -> None:
        current = self.versions.get(path)
        if entry.path == path:
            if entry.kind == FILE:
                self.versions[path] = Version(layer, entry.head(self.limit))
                return
            if current is not None and entry.kind != WHITEOUT:  # a dir or link replaces it
                del self.versions[path]
        if current is None or current.layer.number >= layer.number:
            return  # whiteouts delete only what lower layers made
        below = path.startswith(entry.path.rstrip("/") + "/")
        if (entry.kind == WHITEOUT and (path == entry.path or below)) or (
            entry.kind == OPAQUE and below
        ):
            del self.versions[path]

    def get(self, path: str) -> Version | None:
        return self.versions.get(path)
