"""Cache directories that outlive a run: ``cache: [/root/.cache/pip]`` in a step.

Each is a directory of the store, ``<store root>/ci/cache/<name>/``, bind-mounted
read-write at its path in every step that names it. The name is a hash of the pipeline
(its ``name``, else its file's path) and the path in the container, so two pipelines
never share a cache by accident and one pipeline's steps share theirs. Steps of one
run that name the same path see one directory at once, as with BuildKit's default
``sharing=shared`` cache mounts. Nothing is written into a cache but by the steps.

Each use sets the directory's mtime, so that ``dockyard ci prune`` can tell the caches
nobody has used for a while (see :mod:`.prune`).

Steps fill caches, and dockyard never reads what is in them: it mounts them (runc
resolves the destination inside the container's rootfs) and prune deletes them
(``shutil.rmtree``, which never follows a symlink). A cache dir itself must be a real
directory: a symlink found in its place is refused, never mounted, so that no host
directory can become a cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from dockyard.errors import DockyardError

CACHE_DIR = Path("ci") / "cache"


def cache_name(pipeline_key: str, path: str) -> str:
    """The directory name of the cache ``path`` of the pipeline ``pipeline_key``."""
    return hashlib.sha256(f"{pipeline_key}\0{path}".encode()).hexdigest()[:32]


def cache_dir(store_root: Path, pipeline_key: str, path: str) -> Path:
    """The store directory for the cache ``path`` of the pipeline ``pipeline_key``,
    created if missing, and marked as used now."""
    parent = store_root / CACHE_DIR
    parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    directory = parent / cache_name(pipeline_key, path)
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o755)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise DockyardError(f"cache {path}: {directory} is not a directory") from e
    try:
        os.utime(fd)
    finally:
        os.close(fd)
    return directory
