"""``files``: forbidden paths, setuid/setgid files and world-writable files.

Forbidden paths and globs, setuid/setgid files outside an allow list, and world-writable files and
directories outside ``/tmp`` (the policy's allow list).

Every layer is judged, not only the finished image: a file a later layer deletes still
ships in the image's blobs.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from dockyard.check.findings import Check
from dockyard.check.image import Layer
from dockyard.check.policy import FilesRule
from dockyard.layers.walk import DIR, FILE, HARDLINK, OPAQUE, WHITEOUT, Entry

_SETID = 0o6000


def matches(path: str, globs: tuple[str, ...]) -> bool:
    """``path`` matches one of ``globs`` (``*`` crosses ``/``)."""
    return any(fnmatchcase(path, glob) for glob in globs)


class FilesCheck(Check):
    rule = "files"

    def __init__(self, settings: FilesRule):
        super().__init__(settings.severity)
        self.settings = settings

    def wants_layer(self, layer: Layer) -> bool:
        return True

    def entry(self, layer: Layer, entry: Entry) -> None:
        if entry.kind in (WHITEOUT, OPAQUE):
            return
        path = entry.path
        if matches(path, self.settings.forbidden):
            self.report("forbidden path", layer, path)
        linked = entry.kind in (FILE, HARDLINK)
        if linked and entry.mode & _SETID and not matches(path, self.settings.setuid_allowed):
            bits = " and ".join(
                name for bit, name in ((0o4000, "setuid"), (0o2000, "setgid")) if entry.mode & bit
            )
            self.report(f"{bits} file (mode {entry.mode:04o})", layer, path)
        writable = (linked or entry.kind == DIR) and entry.mode & 0o002
        if writable and not matches(path, self.settings.world_writable_allowed):
            what = "directory" if entry.kind == DIR else "file"
            self.report(f"world-writable {what} (mode {entry.mode:04o})", layer, path)
