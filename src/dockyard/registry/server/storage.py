"""The registry's files under ``--root``.

```
blobs/sha256/<hex>                        every blob and manifest, once (a BlobDir)
tmp/                                      temp files of blobs being written
uploads/<uuid>/data, uploads/<uuid>/repo  uploads in progress (bytes so far; whose)
repos/<name>/_layers/sha256/<hex>         the blobs a repository holds (empty links)
repos/<name>/_manifests/revisions/sha256/<hex>   its manifests (content: media type)
repos/<name>/_manifests/tags/<tag>        a tag (content: the manifest digest)
repos/<name>/_referrers/<alg>-<subject hex>/<alg>-<hex>   referrer descriptors (JSON)
repos/<name>/_upstream                    what a cached repository mirrors (quay.io/org/repo)
gc.lock                                   shared by manifest writes, exclusive for gc
```

Every file that is read back is written temp + fsync + rename, so a reader (or a server
restarted after ``kill -9``) sees a complete old or new file, never half of one. A blob
appears under ``blobs/`` only once its digest was verified; an upload's bytes move there
with one ``rename``. Names, tags and digests are validated (``names``) before they are
joined into paths. This is the filesystem backend of :class:`.backend.RegistryStorage`
(:mod:`.s3storage` is the object-store one); manifests, tags, referrers and upstream
notes are :class:`.manifeststore.ManifestStore`'s, over this module's small files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dockyard.errors import DigestError, NotFound, StoreError
from dockyard.files import atomic
from dockyard.files.blobdir import BlobDir
from dockyard.files.locking import FileLock
from dockyard.oci.digest import CHUNK
from dockyard.registry.server import names
from dockyard.registry.server.manifest_checks import MAX_MANIFEST_SIZE
from dockyard.registry.server.manifeststore import (
    LAYERS,
    MANIFESTS,
    SMALL,
    UPLOADS,
    ManifestStore,
    repo_key,
    split_digest,
)

READ_CHUNK = 1 << 20


def _read_small(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


class Storage(ManifestStore):
    """All repositories of one registry root; safe for many threads and processes."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.where = str(self.root)
        self.blobs = BlobDir(self.root / "blobs", self.root / "tmp")
        self.repos_dir = self.root / "repos"
        self.uploads_dir = self.root / UPLOADS
        self.uploads = Uploads(self)

    def ensure(self) -> None:
        for d in (
            self.root / "blobs" / "sha256",
            self.root / "tmp",
            self.repos_dir,
            self.uploads_dir,
        ):
            d.mkdir(parents=True, exist_ok=True)

    def present(self) -> bool:
        return self.root.is_dir()

    def close(self) -> None:
        pass

    def gc_lock(self, *, shared: bool) -> FileLock:
        """Manifest writes hold it shared; gc holds it exclusive while it marks and sweeps."""
        return FileLock(self.root / "gc.lock", shared=shared)

    # -- repositories ------------------------------------------------------------------

    def repo_dir(self, name: str) -> Path:
        return self.root / repo_key(name)

    def repo_exists(self, name: str) -> bool:
        d = self.repo_dir(name)
        return (d / MANIFESTS).is_dir() or (d / LAYERS).is_dir()

    def repositories(self, last: str | None = None, limit: int | None = None) -> list[str]:
        """Repository names after ``last`` in catalog order, at most ``limit``.

        The order is :func:`.names.catalog_order`.
        """
        found: list[str] = []

        def walk(directory: Path, prefix: str) -> None:
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                return
            if any(e.name in (MANIFESTS, LAYERS) for e in entries):
                found.append(prefix)
            for entry in entries:
                if not entry.name.startswith(("_", ".")) and entry.is_dir(follow_symlinks=False):
                    walk(Path(entry.path), f"{prefix}/{entry.name}" if prefix else entry.name)

        walk(self.repos_dir, "")
        ordered = sorted((n for n in found if n), key=names.catalog_order)
        if last is not None:
            ordered = [n for n in ordered if names.catalog_order(n) > names.catalog_order(last)]
        return ordered if limit is None else ordered[:limit]

    # -- blobs of a repository -----------------------------------------------------------

    def _layer_link(self, name: str, digest: str) -> Path:
        algorithm, hex_part = split_digest(digest)
        return self.repo_dir(name) / LAYERS / algorithm / hex_part

    def blob_stat(self, digest: str) -> os.stat_result | None:
        try:
            return os.stat(self.blobs.path(digest))
        except FileNotFoundError:
            return None

    def blob_size(self, digest: str) -> int | None:
        stat = self.blob_stat(digest)
        return None if stat is None else stat.st_size

    def blob_file(self, digest: str) -> Path | None:
        return self.blobs.path(digest)

    def read_blob(self, digest: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        with open(self.blobs.path(digest), "rb") as f:
            f.seek(start)
            remaining = length
            while remaining is None or remaining > 0:
                chunk = f.read(READ_CHUNK if remaining is None else min(READ_CHUNK, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def blob_url(self, digest: str) -> None:
        return None

    def blob_sink(self, digest: str) -> FileSink:
        return FileSink(self, digest)

    def blob_age(self, digest: str) -> float | None:
        stat = self.blob_stat(digest)
        return None if stat is None else time.time() - stat.st_mtime

    def delete_blob_if_idle(self, digest: str, grace: float) -> bool:
        path = self.blobs.path(digest)
        try:
            if time.time() - os.stat(path).st_mtime < grace:
                return False
            os.unlink(path)
        except FileNotFoundError:
            return False
        return True

    def remove_stale(self, older_than: float) -> int:
        removed = self.blobs.remove_stale_temps(older_than)
        for directory, _, files in os.walk(self.repos_dir):
            if any(atomic.is_temp(f) for f in files):  # left by a killed tag/link write
                removed += atomic.remove_stale_temps(Path(directory), older_than)
        return removed

    def has_blob(self, name: str, digest: str) -> bool:
        """The repository links the blob and the blob is there."""
        return self._layer_link(name, digest).exists() and self.blobs.has(digest)

    def linked_blob_size(self, name: str, digest: str) -> int | None:
        if not self._layer_link(name, digest).exists():
            return None
        return self.blob_size(digest)

    def link_blob(self, name: str, digest: str) -> None:
        """Add the blob to the repository; also marks the blob recently used (gc grace)."""
        link = self._layer_link(name, digest)
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.touch()
        self.touch_blob(digest)

    def touch_blob(self, digest: str) -> None:
        """Mark a blob as in use now: gc spares blobs younger than its grace period."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.blobs.path(digest))

    def unlink_blob(self, name: str, digest: str) -> bool:
        try:
            self._layer_link(name, digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def linked_blobs(self, name: str) -> list[str]:
        return _digests_under(self.repo_dir(name) / LAYERS)

    # -- what ManifestStore needs --------------------------------------------------------

    def _get_small(self, key: str, limit: int = SMALL) -> bytes | None:
        try:
            with open(self.root / key, "rb") as f:
                data = f.read(limit + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return None if len(data) > limit else data

    def _put_small(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, data)

    def _remove(self, key: str) -> bool:
        try:
            (self.root / key).unlink()
        except FileNotFoundError:
            return False
        return True

    def _exists(self, key: str) -> bool:
        return (self.root / key).exists()

    def _age(self, key: str) -> float | None:
        try:
            return time.time() - os.stat(self.root / key).st_mtime
        except FileNotFoundError:
            return None

    def _children(self, prefix: str) -> list[tuple[str, float]]:
        try:
            entries = list(os.scandir(self.root / prefix))
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for entry in entries:
            if atomic.is_temp(entry.name):
                continue
            with contextlib.suppress(FileNotFoundError):
                out.append((entry.name, entry.stat(follow_symlinks=False).st_mtime))
        return out

    def _digests_under(self, prefix: str) -> list[str]:
        return _digests_under(self.root / prefix)

    def _manifest_bytes(self, digest: str) -> bytes | None:
        stat = self.blob_stat(digest)
        if stat is None or stat.st_size > MAX_MANIFEST_SIZE:
            return None
        try:
            return self.blobs.read_bytes(digest, stat.st_size)
        except (NotFound, StoreError):
            return None

    def _write_manifest_blob(self, data: bytes, digest: str | None) -> str:
        return self.blobs.write_bytes(data, digest)

    def _has_blob_body(self, digest: str) -> bool:
        return self.blobs.has(digest)

    def touch_tag(self, name: str, tag: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.root / self._tag(name, tag))


class Uploads:
    """Upload sessions: bytes appended to ``uploads/<id>/data``, hashed as they arrive.

    The hash state of each session stays in memory between requests; after a restart
    (or for a sha512 digest) the file is hashed again from the start.
    """

    def __init__(self, storage: Storage):
        self.storage = storage
        self._state: dict[str, tuple[Any, int]] = {}  # id -> (sha256 object, bytes hashed)
        self._lock = threading.Lock()

    def _dir(self, upload_id: str) -> Path:
        if not names.valid_upload_id(upload_id):
            raise StoreError(f"invalid upload id {upload_id!r}")
        return self.storage.uploads_dir / upload_id

    def start(self, name: str) -> str:
        upload_id = str(uuid.uuid4())
        directory = self._dir(upload_id)
        directory.mkdir(parents=True)
        (directory / "data").touch()
        atomic.write_bytes(directory / "repo", name.encode())
        with self._lock:
            self._state[upload_id] = (hashlib.sha256(), 0)
        return upload_id

    def repository(self, upload_id: str) -> str | None:
        """The repository the session belongs to; None if there is no such session."""
        if not names.valid_upload_id(upload_id):
            return None
        return _read_small(self._dir(upload_id) / "repo")

    def size(self, upload_id: str) -> int:
        try:
            return os.stat(self._dir(upload_id) / "data").st_size
        except FileNotFoundError:
            return 0

    def open(self, upload_id: str) -> UploadWriter:
        return UploadWriter(self, upload_id, self._dir(upload_id))

    def cancel(self, upload_id: str) -> None:
        with self._lock:
            self._state.pop(upload_id, None)
        shutil.rmtree(self._dir(upload_id), ignore_errors=True)

    def ids(self) -> list[str]:
        try:
            return [e for e in os.listdir(self.storage.uploads_dir) if names.valid_upload_id(e)]
        except FileNotFoundError:
            return []

    def last_activity(self, upload_id: str) -> float:
        directory = self._dir(upload_id)
        times = []
        for part in ("data", "repo", ""):
            with contextlib.suppress(FileNotFoundError):
                times.append(os.stat(directory / part).st_mtime)
        return max(times, default=0.0)

    def _take_state(self, upload_id: str) -> tuple[Any, int] | None:
        with self._lock:
            return self._state.pop(upload_id, None)

    def _put_state(self, upload_id: str, state: tuple[Any, int]) -> None:
        with self._lock:
            self._state[upload_id] = state


class UploadWriter:
    """Appends to one upload session; :meth:`finish` verifies and publishes the blob.

    One writer per session at a time (the server serialises requests per session).
    """

    def __init__(self, uploads: Uploads, upload_id: str, directory: Path):
        self._uploads = uploads
        self.upload_id = upload_id
        self.directory = directory
        self.data_path = directory / "data"
        self._f = open(self.data_path, "ab")  # noqa: SIM115 - closed by close()/finish()
        self.offset = self._f.tell()
        state = uploads._take_state(upload_id)
        if state is not None and state[1] == self.offset:
            self._hash = state[0]
        else:  # restarted server, or a write that failed half-way: hash what is there
            self._hash = self._hash_file("sha256")

    def _hash_file(self, algorithm: str) -> Any:
        h = hashlib.new(algorithm)
        with open(self.data_path, "rb") as f:
            remaining = self.offset
            while remaining > 0 and (chunk := f.read(min(CHUNK * 4, remaining))):
                h.update(chunk)
                remaining -= len(chunk)
        return h

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._f.write(data)
        self._hash.update(data)
        self.offset += len(data)

    def close(self) -> None:
        """Keep the session for more chunks (the hash state stays in memory)."""
        if self._f.closed:
            return
        try:
            self._f.flush()
        finally:
            self._f.close()
        self._uploads._put_state(self.upload_id, (self._hash, self.offset))

    def digest(self, algorithm: str = "sha256") -> str:
        self._f.flush()
        h = self._hash if algorithm == "sha256" else self._hash_file(algorithm)
        return f"{algorithm}:{h.hexdigest()}"

    def finish(self, digest: str, storage: Storage) -> bool:
        """Check the bytes are ``digest``; move them into the blob dir; end the session.

        Raises :class:`DigestError` (and drops the session: nothing is kept) on a
        mismatch. Returns False if the blob was already there (ours is dropped).
        """
        algorithm, _ = split_digest(digest)
        actual = self.digest(algorithm)
        if actual != digest:
            self._f.close()
            self._uploads.cancel(self.upload_id)
            raise DigestError(f"upload has digest {actual}, not {digest}")
        target = storage.blobs.path(digest)
        added = not target.exists()
        if added:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.fchmod(self._f.fileno(), atomic.FILE_MODE)
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self.data_path, target)
            atomic.fsync_dir(target.parent)
        self._f.close()
        self._uploads.cancel(self.upload_id)
        storage.touch_blob(digest)
        return added

    def abort(self) -> None:
        """Drop the session and its bytes (a failed monolithic upload)."""
        self._f.close()
        self._uploads.cancel(self.upload_id)


class FileSink:
    """A blob the pull-through cache writes as it streams.

    A temp file renamed into the blob dir on :meth:`commit` (the cache checked the
    digest as the bytes passed).
    """

    def __init__(self, storage: Storage, digest: str):
        self._target = storage.blobs.path(digest)
        tmp = storage.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        self._target.parent.mkdir(parents=True, exist_ok=True)
        self._f, self._temp = atomic.create_temp(tmp, "mirror")
        self._committed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self._f.write(data)

    def commit(self) -> None:
        atomic.commit(self._f, self._temp, self._target)
        self._committed = True
        self._f.close()

    def discard(self) -> None:
        self._f.close()
        if not self._committed:
            self._temp.unlink(missing_ok=True)


def _digests_under(base: Path) -> list[str]:
    """The digests named by ``base/<algorithm>/<hex>`` entries (link dirs of a repo)."""
    out = []
    for algorithm in ("sha256", "sha512"):
        with contextlib.suppress(FileNotFoundError):
            out += [
                f"{algorithm}:{e}"
                for e in os.listdir(base / algorithm)
                if names.valid_digest(f"{algorithm}:{e}")
            ]
    return out
