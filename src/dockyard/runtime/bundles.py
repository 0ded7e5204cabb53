"""A container's runc bundle: a private directory of files that may hold secrets.

The bundle (``<store root>/bundles/<id>``) holds runc's ``config.json``, whose process
environment carries a pipeline's secrets and ``RUN --mount=type=secret,env=`` values, the
files of ``RUN --mount=type=secret`` (:meth:`.config.Mount.file`), runc's log, and the
``/etc`` files (:mod:`.etcfiles`). So ``bundles`` and every bundle are created mode 0700
and owned by us, and the files we write in it are created 0600 (``O_EXCL``, never
followed through a link): no other uid of the host can reach any of them, at no moment.
The ``/etc`` files keep their 0644, which a container's non-root user needs; they hold no
secret and sit behind the bundle's 0700. A staged file gets the owner and mode its mount
asks for (its container's user must read it), also behind the 0700.

A bundle is removed with its container (:meth:`.container.Container.close`); after a
crash, by :func:`.container.reap_orphans`, which every process runs on a store before it
starts its first container there, as ``dockyard prune`` does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from dockyard.errors import ContainerError
from dockyard.runtime.config import Mount

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
STAGED = "files"  # below the bundle: the staged files of file mounts


def create(bundle: Path) -> None:
    """Make the empty bundle directory, and ``bundles`` above it, both mode 0700.

    Only the last two components are ours to make private; ``bundles`` made by an older
    dockyard (0755) is narrowed. The bundle itself must not exist yet.
    """
    parent = bundle.parent
    parent.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(parent, PRIVATE_DIR)
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:  # narrowed and used through the fd: a symlink in its place is refused
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise ContainerError(f"{parent} belongs to uid {st.st_uid}, not to us")
        if st.st_mode & 0o077:
            os.fchmod(fd, PRIVATE_DIR)
        os.mkdir(bundle.name, PRIVATE_DIR, dir_fd=fd)  # mkdir's mode is only narrowed
    finally:
        os.close(fd)


def write_private(
    path: Path, data: bytes, *, mode: int = PRIVATE_FILE, owner: tuple[int, int] | None = None
) -> None:
    """Create ``path`` (new, not through a link) holding ``data``.

    Mode 0600 from the start, then ``owner`` (uid, gid) and ``mode`` if others are asked for."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, PRIVATE_FILE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if owner is not None:
            os.fchown(fd, *owner)
        if mode != PRIVATE_FILE:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def stage_files(bundle: Path, mounts: Sequence[Mount]) -> list[Mount]:
    """``mounts`` with each file mount turned into a read-only bind of a bundle file.

    Each file mount is written into the bundle and bound from there; the other mounts are unchanged.
    """
    staged: list[Mount] = []
    directory = bundle / STAGED
    for number, mount in enumerate(mounts):
        if mount.type != "file":
            staged.append(mount)
            continue
        if not directory.exists():
            os.mkdir(directory, PRIVATE_DIR)
        path = directory / str(number)
        # As BuildKit: the mode's permission bits only (no setuid, setgid or sticky).
        write_private(path, mount.content, mode=mount.mode & 0o777, owner=(mount.uid, mount.gid))
        staged.append(Mount.bind(str(path), mount.destination, readonly=True))
    return staged
