"""What is mounted where, from this mount namespace's ``/proc/self/mountinfo``.

Shared by the runtime (unmounting what a container left) and the store (never deleting
through a mount): a bind mount of a dir on the same filesystem has the same ``st_dev``,
so only the mount table tells.
"""

from __future__ import annotations

import os


def mount_points_under(directory: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below ``directory``."""
    prefix = os.path.realpath(directory)
    found = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            point = _unescape(line.split(b" ")[4].decode(errors="surrogateescape"))
            if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
                found.append(point)
    return found


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field
