"""Cache directories that outlive a run: ``cache: [/root/.cache/pip]`` in a step.

Each is a directory of the store, ``<store root>/ci/cache/<key>/``, bind-mounted
read-write at its path in every step that names it. The key is a hash of the pipeline
(its ``name``, else its file's path) and the path in the container, so two pipelines
never share a cache by accident and one pipeline's steps share theirs. Steps of one
run that name the same path see one directory at once, as with BuildKit's default
``sharing=shared`` cache mounts. Nothing is written into a cache but by the steps.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CACHE_DIR = Path("ci") / "cache"


def cache_dir(store_root: Path, pipeline_key: str, path: str) -> Path:
    """The store directory for the cache ``path`` of the pipeline ``pipeline_key``,
    created if missing."""
    digest = hashlib.sha256(f"{pipeline_key}\0{path}".encode()).hexdigest()[:32]
    directory = store_root / CACHE_DIR / digest
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    return directory
