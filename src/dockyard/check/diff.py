"""``dockyard diff IMAGE1 IMAGE2``: the paths added, removed and changed between two images.

Compared are their finished filesystems: kind, mode, owner, size, link target or content.

Each image's layers stream once (nothing is extracted); a file's content is compared
by its sha256, hashed as it passes. Memory holds one small record per path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dockyard.check.image import OpenedImage
from dockyard.check.layers import Tree
from dockyard.layers.walk import FILE, OPAQUE, WHITEOUT, Entry, walk_layer


@dataclass(frozen=True)
class State:
    """What a path is in a finished image."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    target: str  # a link's target, a file's content digest


@dataclass
class ImageDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)  # path, what differs

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": [{"path": path, "what": what} for path, what in self.changed],
        }


def final_tree(image: OpenedImage) -> dict[str, State]:
    """Every path of ``image``'s finished filesystem (``/`` itself left out)."""
    tree: Tree[State] = Tree()
    for layer in image.layers:

        def visit(entry: Entry, number: int = layer.number) -> None:
            if entry.kind in (WHITEOUT, OPAQUE):
                for _ in tree.remove(entry.path, number, keep_top=entry.kind == OPAQUE):
                    pass
            elif entry.path != "/":
                target = entry.content_digest() if entry.kind == FILE else entry.linkname
                state = State(entry.kind, entry.mode, entry.uid, entry.gid, entry.size, target)
                tree.put(entry.path, number, state)

        with image.source.open_blob(layer.descriptor) as blob:
            walk_layer(blob, visit, name=layer.label)
    return {path: state for path, (_, state) in tree.files.items()}


def diff_images(first: OpenedImage, second: OpenedImage) -> ImageDiff:
    """What changes from ``first`` to ``second``, each list sorted by path."""
    a, b = final_tree(first), final_tree(second)
    result = ImageDiff()
    result.added = sorted(set(b) - set(a))
    result.removed = sorted(set(a) - set(b))
    for path in sorted(set(a) & set(b)):
        if a[path] != b[path]:
            result.changed.append((path, _what(a[path], b[path])))
    return result


def _what(old: State, new: State) -> str:
    if old.kind != new.kind:
        return f"{old.kind} -> {new.kind}"
    parts = []
    if old.target != new.target:
        parts.append("content" if new.kind == FILE else f"target {old.target} -> {new.target}")
    if old.mode != new.mode:
        parts.append(f"mode {old.mode:04o} -> {new.mode:04o}")
    if (old.uid, old.gid) != (new.uid, new.gid):
        parts.append(f"owner {old.uid}:{old.gid} -> {new.uid}:{new.gid}")
    return ", ".join(parts) or "metadata"
