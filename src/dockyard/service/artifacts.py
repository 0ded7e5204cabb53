"""The server's artifact store: file contents by SHA-256 under ``DATA/artifacts``.

An upload streams to a hidden temp file while it is hashed, is refused past
:data:`MAX_SIZE`, and is renamed to ``sha256/<hex>`` (the same content from many runs
is kept once). What a file was called lives in the database, never in a path here.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from dockyard.files.atomic import commit, temp_file

MAX_SIZE = 2 << 30  # bytes in one artifact file


class TooLarge(Exception):
    pass


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = root
        (root / "sha256").mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, digest: str) -> Path:
        algorithm, _, hex_digest = digest.partition(":")
        if algorithm != "sha256" or len(hex_digest) != 64 or not hex_digest.isalnum():
            raise ValueError(f"not a sha256 digest: {digest[:80]!r}")
        return self.root / "sha256" / hex_digest

    async def put(self, chunks: AsyncIterator[bytes], max_size: int = MAX_SIZE) -> tuple[str, int]:
        """Store what ``chunks`` bring; return its digest and size."""
        hasher, size = hashlib.sha256(), 0
        with temp_file(self.root, "upload") as (f, temp):
            async for chunk in chunks:
                size += len(chunk)
                if size > max_size:
                    raise TooLarge(f"artifact over {max_size} bytes")
                hasher.update(chunk)
                await run_in_threadpool(f.write, chunk)
            digest = "sha256:" + hasher.hexdigest()
            await run_in_threadpool(commit, f, temp, self.path(digest))
        return digest, size
