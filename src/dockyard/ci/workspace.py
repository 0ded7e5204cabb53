"""A run's workspace: the pipeline's directory copied once, shared by every container.

The copy is what steps write to (bind-mounted read-write at ``/workspace``), so the
source tree is never modified. The store (when it lies inside the source tree) is left
out, as are sockets, fifos and devices. Artifacts are copied out of it afterwards.

Steps write the workspace, so it is untrusted when read back: artifact paths are
resolved and must stay inside it, and symbolic links are copied as links, never
followed.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

MOUNT_POINT = "/workspace"


def create_workspace(source: Path, target: Path, exclude: Iterable[Path] = ()) -> None:
    """Copy the tree ``source`` to ``target`` (new), without the trees ``exclude``."""
    skipped = {os.path.realpath(p) for p in exclude}

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set()
        for name in names:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                if os.path.realpath(path) in skipped:
                    ignored.add(name)
            elif not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                ignored.add(name)
        return ignored

    shutil.copytree(source, target, symlinks=True, ignore=ignore)


def collect_artifacts(workspace: Path, patterns: Iterable[str], target: Path) -> list[str]:
    """Copy what ``patterns`` (globs relative to the workspace; ``**`` spans dirs)
    match into ``target``, keeping relative paths. Return the copied paths."""
    root = workspace.resolve()
    copied: list[str] = []
    for pattern in patterns:
        for relative in sorted(
            glob.glob(pattern, root_dir=root, recursive=True, include_hidden=True)
        ):
            source = root / relative
            if any(Path(relative).is_relative_to(done) for done in copied):
                continue  # inside a directory already copied
            if not source.parent.resolve().is_relative_to(root):
                continue  # reached through a link that leaves the workspace
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir() and not source.is_symlink():
                shutil.copytree(source, destination, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(source, destination, follow_symlinks=False)
            copied.append(os.path.normpath(relative))
    return copied
