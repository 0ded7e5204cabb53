"""What is inside an image, layer by layer (``dockyard inspect --layers``), as dive shows it.

Per layer the instruction that made it, its compressed and uncompressed size, the files it adds,
changes and deletes; the image's wasted bytes and an efficiency score; its largest files.

*Wasted* bytes are file bytes an image ships but never shows: a file a later layer
overwrites (the same path in two layers: duplicated) or deletes (a whiteout, or an
opaque directory). *Efficiency* is the share of all the layers' file bytes that the
finished image shows (1.0: nothing wasted), dive's score. Files are every non-directory
entry; directories are not counted. Layers stream as in ``dockyard check``: nothing is
extracted, and memory holds one small record per path of the image.
"""

from __future__ import annotations

import heapq
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from dockyard.check.image import Layer, OpenedImage
from dockyard.layers.walk import DIR, OPAQUE, WHITEOUT, Entry, walk_layer

LARGEST = 10
V = TypeVar("V")


@dataclass
class LayerReport:
    """One layer's numbers."""

    layer: Layer
    uncompressed: int = 0
    added: int = 0
    changed: int = 0
    deleted: int = 0
    file_bytes: int = 0  # of the files this layer holds
    wasted: int = 0  # of those, what later layers overwrite or delete

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer.number,
            "digest": self.layer.descriptor.digest,
            "created_by": self.layer.created_by,
            "compressed": self.layer.descriptor.size,
            "uncompressed": self.uncompressed,
            "files_added": self.added,
            "files_changed": self.changed,
            "files_deleted": self.deleted,
            "file_bytes": self.file_bytes,
            "wasted_bytes": self.wasted,
        }


@dataclass
class ImageReport:
    """An image's layers, waste and largest files."""

    image: str
    layers: list[LayerReport]
    largest: list[tuple[str, int, int]] = field(default_factory=list)  # path, size, layer

    @property
    def total(self) -> int:
        return sum(layer.file_bytes for layer in self.layers)

    @property
    def wasted(self) -> int:
        return sum(layer.wasted for layer in self.layers)

    @property
    def efficiency(self) -> float:
        return 1.0 if not self.total else (self.total - self.wasted) / self.total

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "layers": [layer.to_json() for layer in self.layers],
            "total_file_bytes": self.total,
            "wasted_bytes": self.wasted,
            "efficiency": round(self.efficiency, 4),
            "largest_files": [
                {"path": path, "size": size, "layer": number} for path, size, number in self.largest
            ],
        }


class Tree(Generic[V]):
    """The entries of an image so far: path -> (layer number, a value).

    With each directory's children, so that a whiteout removes a subtree without a scan."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[int, V]] = {}
        self.children: dict[str, set[str]] = {}

    def put(self, path: str, number: int, value: V) -> tuple[int, V] | None:
        """Add or replace an entry; return what it replaced."""
        old = self.files.get(path)
        self.files[path] = (number, value)
        self._link(path)
        return old

    def mkdir(self, path: str) -> None:
        self._link(path)

    def _link(self, path: str) -> None:
        while path != "/":
            parent = posixpath.dirname(path)
            siblings = self.children.setdefault(parent, set())
            if path in siblings:
                return
            siblings.add(path)
            path = parent

    def remove(self, path: str, below: int, *, keep_top: bool = False) -> Iterator[tuple[int, V]]:
        """Remove ``path`` and what is under it, if a layer below number ``below`` put it.

        A layer's whiteouts delete only what lower layers made; with ``keep_top``, ``path`` itself
        stays. Yield ``(layer number, value)`` of each entry removed. The children index keeps the
        names: it only says where to look."""
        pending = [path]
        while pending:
            current = pending.pop()
            pending.extend(self.children.get(current, ()))
            if keep_top and current == path:
                continue
            old = self.files.get(current)
            if old is not None and old[0] < below:
                del self.files[current]
                yield old


def analyse(image: OpenedImage) -> ImageReport:
    """Read every layer of ``image`` once and report on it."""
    tree: Tree[int] = Tree()
    reports = [LayerReport(layer) for layer in image.layers]
    by_number = {report.layer.number: report for report in reports}
    for report in reports:
        number = report.layer.number

        def visit(entry: Entry, report: LayerReport = report, number: int = number) -> None:
            if entry.kind in (WHITEOUT, OPAQUE):
                removed = list(tree.remove(entry.path, number, keep_top=entry.kind == OPAQUE))
                report.deleted += len(removed)
                for owner, size in removed:
                    by_number[owner].wasted += size
            elif entry.kind == DIR:
                tree.mkdir(entry.path)
            else:
                report.file_bytes += entry.size
                old = tree.put(entry.path, number, entry.size)
                if old is None:
                    report.added += 1
                else:
                    report.changed += 1
                    by_number[old[0]].wasted += old[1]

        with image.source.open_blob(report.layer.descriptor) as blob:
            report.uncompressed = walk_layer(blob, visit, name=report.layer.label).tar_size
    largest = heapq.nlargest(
        LARGEST, ((path, size, number) for path, (number, size) in tree.files.items()),
        key=lambda item: (item[1], item[0]),
    )  # fmt: skip
    return ImageReport(image.name, reports, largest)
