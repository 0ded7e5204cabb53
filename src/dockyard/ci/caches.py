"""Cache directories that outlive a run: ``cache: [/root/.cache/pip]`` in a step.

Each is a directory of the store, ``<store root>/ci/cache/<name>/``, bind-mounted
read-write at its path in every step that names it. The name is a hash of the pipeline
(its ``name``, else its file's path) and the path in the container, so two pipelines
never share a cache by accident and one pipeline's steps share theirs. Steps of one
run that name the same path see one directory at once, as with BuildKit's default
``sharing=shared`` cache mounts. Nothing is written into a cache but by the steps.

Each use sets the directory's mtime, so that ``dockyard ci prune`` can tell the caches
nobody has used for a while (see :mod:`.prune`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_DIR = Path("ci") / "cache"


def cache_name(pipeline_key: str, path: str) -> str:
    """The directory name of the cache ``path`` of the pipeline ``pipeline_key``."""
    return hashlib.sha256(f"{pipeline_key}\0{path}".encode()).hexdigest()[:32]


def cache_dir(store_root: Path, pipeline_key: str, path: str) -> Path:
    """The store directory for the cache ``path`` of the pipeline ``pipeline_key``,
    created if missing, and marked as used now."""
    directory = store_root / CACHE_DIR / cache_name(pipeline_key, path)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.utime(directory)
    return directory
