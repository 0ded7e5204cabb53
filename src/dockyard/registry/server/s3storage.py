"""The registry in an S3-compatible object store, shared by several replicas.

Keys under ``s3://BUCKET/PREFIX/`` (the filesystem backend's layout, :mod:`.storage`):

```
blobs/<alg>/<hex>                          every blob and manifest, once; only verified
touched/<alg>/<hex>                        empty: its time is the blob's last use (gc grace)
repos/<name>/_layers/<alg>/<hex>           the blobs a repository holds (empty links)
repos/<name>/_manifests/revisions/<alg>/<hex>   its manifests (content: media type)
repos/<name>/_manifests/tags/<tag>         a tag (content: the manifest digest)
repos/<name>/_referrers/<alg>-<subject hex>/<alg>-<hex>   referrer descriptors (JSON)
repos/<name>/_upstream                     what a cached repository mirrors
uploads/<id>/state                         an upload: repository, multipart upload, parts
uploads/<id>/tail                          its bytes after the last whole part
uploads/<id>/data                          the completed multipart object, not yet verified
locks/gc, locks/writers/<id>, locks/waiting/<id>   the gc lock (:class:`BucketLock`)
```

Manifests, tags, referrers and upstream notes are
:class:`.manifeststore.ManifestStore`'s, over this module's objects. Every object is
written whole by one PUT (or one completed multipart upload, or one copy), so a reader
sees all of an old or a new object. A blob upload is an S3 multipart upload whose state
lives in the bucket, so the ``PATCH`` requests of one client may land on different
replicas: each request reads the state and the tail, appends, uploads whole parts of
:data:`PART_SIZE` (S3 wants at least 5 MiB for all but the last part; the bytes between
parts wait in memory, one part at most per request in flight), and writes the tail and
state back. The bytes are hashed as they stream; the replica that finishes uses its hash
if it saw every byte, else it reads the completed object back and hashes that. Only a
verified upload is copied to ``blobs/`` (a server-side copy): until then nothing is
visible, and an abandoned upload is removed by gc. Blob bodies stream, in ``Range``
requests when asked; nothing holds a whole blob in memory. With ``--redirect`` the app
sends clients to a pre-signed URL of the object instead (:meth:`S3Storage.blob_url`).

The catalog walks repository names a level at a time (delimiter listings that start
after the page's ``last``), so a page costs the levels it shows, never the objects inside
the repositories; gc checks touch markers against the blob listing side by side.

Consistency rests on S3's strong read-after-write consistency: a manifest is written
after the blobs it names were checked, and before its tags; a tag is one object, so two
replicas pushing one tag leave one of the two manifests.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import math
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from dockyard.errors import DigestError, DockyardError, NotFound, StoreError
from dockyard.oci import digest as digests
from dockyard.oci.digest import CHUNK, VerifyingReader
from dockyard.registry.server import names
from dockyard.registry.server.config import parse_storage_url
from dockyard.registry.server.manifest_checks import MAX_MANIFEST_SIZE
from dockyard.registry.server.manifeststore import (
    LAYERS,
    MANIFESTS,
    REPOS,
    SMALL,
    UPLOADS,
    ManifestStore,
    repo_key,
    split_digest,
)
from dockyard.registry.server.storage import READ_CHUNK

if TYPE_CHECKING:
    from dockyard.registry.server.config import ServerConfig

PART_SIZE = 8 << 20  # multipart part size: S3's minimum is 5 MiB
MAX_STATE = 2 << 20  # an upload's state: up to 10000 parts
LOCK_STALE = 120.0  # seconds: a lock object not refreshed for longer was left by a dead process
LOCK_REFRESH = 30.0
LOCK_POLL = 0.25
REDIRECT_TTL = 20 * 60  # seconds a pre-signed blob URL works (distribution's default)
LIST_BATCH = 16  # namespaces whose levels the catalog lists at once

_Level = tuple[list[str], bool]  # sub-namespaces, and whether the node is a repository


def _missing(error: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(error, ClientError):
        return False
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload") or status == 404


def _precondition_failed(error: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(error, ClientError) and (
        error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412)
    )


def _join(node: str, component: str) -> str:
    return f"{node}/{component}" if node else component


def _age(modified: datetime) -> float:
    return (datetime.now(UTC) - modified).total_seconds()


class Bucket:
    """Objects under one prefix of one bucket: the few calls the registry makes."""

    def __init__(self, client: Any, name: str, prefix: str):
        self.client = client
        self.name = name
        self.prefix = f"{prefix}/" if prefix else ""

    def key(self, rel: str) -> str:
        return self.prefix + rel

    def head(self, rel: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.name, Key=self.key(rel))
        except Exception as e:
            if _missing(e):
                return None
            raise

    def get(self, rel: str, limit: int) -> bytes | None:
        """A small object's bytes; None if missing or over ``limit`` bytes."""
        try:
            got = self.client.get_object(Bucket=self.name, Key=self.key(rel))
        except Exception as e:
            if _missing(e):
                return None
            raise
        with contextlib.closing(got["Body"]) as body:
            if got.get("ContentLength", 0) > limit:
                return None
            data = body.read(limit + 1)
        return None if len(data) > limit else data

    def open(self, rel: str, byte_range: str | None = None) -> Any:
        """The streaming body of an object (a ``Range`` of it); NotFound if missing."""
        kw = {"Range": byte_range} if byte_range else {}
        try:
            return self.client.get_object(Bucket=self.name, Key=self.key(rel), **kw)["Body"]
        except Exception as e:
            if _missing(e):
                raise NotFound(f"s3://{self.name}/{self.key(rel)} not found") from None
            raise

    def put(self, rel: str, data: bytes | bytearray, **kw: Any) -> None:
        self.client.put_object(Bucket=self.name, Key=self.key(rel), Body=bytes(data), **kw)

    def delete(self, rel: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=self.key(rel))

    def objects(self, rel_prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(key relative to rel_prefix, object)`` for every object under it."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=self.key(rel_prefix)
        )
        start = len(self.key(rel_prefix))
        for page in pages:
            for obj in page.get("Contents", ()):
                yield obj["Key"][start:], obj

    def any_under(self, rel_prefix: str) -> bool:
        got = self.client.list_objects_v2(Bucket=self.name, Prefix=self.key(rel_prefix), MaxKeys=1)
        return bool(got.get("Contents"))

    def folders(self, rel_prefix: str, start_after: str | None = None) -> list[str]:
        """The next path components under ``rel_prefix`` (it ends in ``/``).

        With ``start_after``, those of keys after ``rel_prefix + start_after``.
        """
        kw = {"StartAfter": self.key(rel_prefix + start_after)} if start_after else {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=self.key(rel_prefix), Delimiter="/", **kw
        )
        start = len(self.key(rel_prefix))
        return [
            p["Prefix"][start:].rstrip("/")
            for page in pages
            for p in page.get("CommonPrefixes", ())
        ]


def make_client(config: ServerConfig) -> Any:
    """A boto3 S3 client with credentials from the usual AWS environment and files.

    Path-style addressing for a given endpoint (SeaweedFS, MinIO, Ceph); checksums only
    where S3 demands them (object stores other than AWS's reject the newer trailing
    ones).
    """
    import boto3
    from botocore.config import Config

    settings = Config(
        s3={"addressing_style": "path"} if config.s3_endpoint else {},
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=64,
        connect_timeout=10,
        read_timeout=60,
        signature_version="s3v4",  # pre-signed URLs too (botocore would sign those v2)
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client = boto3.session.Session().client(
        "s3", endpoint_url=config.s3_endpoint, region_name=config.s3_region, config=settings
    )
    client.meta.events.register("before-send.s3", _no_expect_continue)
    return client


def _no_expect_continue(request: Any, **_: Any) -> None:
    """Send bodies without ``Expect: 100-continue``: a store that answers such a request
    before its body (SeaweedFS does, for an empty one) leaves a second answer on the
    connection, which the next request then reads as its own. Parts are small: waiting
    for the go-ahead would save nothing."""
    if "Expect" in request.headers:
        del request.headers["Expect"]


class BucketLock:
    """The gc lock in the bucket: shared by manifest writes, exclusive for gc.

    Many shared holders (manifest writes), one exclusive (gc), none of them on one
    machine.

    A shared holder writes ``locks/writers/<id>``, then looks for ``locks/gc``: if it is
    there, it removes its own object and waits (noted in ``locks/waiting/<id>``, which
    the next gc lets in first: gc after gc never starves writers). gc creates
    ``locks/gc`` (only if absent), then waits until no writer object is left. With
    strongly consistent reads, one of the two always sees the other: no manifest is
    written while gc marks and sweeps. Held objects are rewritten every
    :data:`LOCK_REFRESH` seconds; one older than :data:`LOCK_STALE` was left by a killed
    process and is ignored.
    """

    GC = "locks/gc"
    WRITERS = "locks/writers/"
    WAITING = "locks/waiting/"

    def __init__(self, bucket: Bucket):
        self.bucket = bucket
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._refresher: threading.Thread | None = None

    def _hold(self, rel: str) -> None:
        with self._lock:
            self._held.add(rel)
            if self._refresher is None:
                self._refresher = threading.Thread(
                    target=self._refresh, name="s3-lock-refresh", daemon=True
                )
                self._refresher.start()

    def _release(self, rel: str) -> None:
        with self._lock:
            self._held.discard(rel)
        self.bucket.delete(rel)

    def _refresh(self) -> None:
        while True:
            time.sleep(LOCK_REFRESH)
            with self._lock:
                held = list(self._held)
            for rel in held:
                with contextlib.suppress(Exception):
                    self.bucket.put(rel, b"")

    def _gc_running(self) -> bool:
        found = self.bucket.head(self.GC)
        return found is not None and _age(found["LastModified"]) < LOCK_STALE

    def _fresh(self, rel_prefix: str) -> bool:
        return any(
            _age(obj["LastModified"]) < LOCK_STALE for _, obj in self.bucket.objects(rel_prefix)
        )

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        rel = f"{self.WRITERS}{uuid.uuid4()}"
        waiting = None
        try:
            while True:
                self.bucket.put(rel, b"")
                if not self._gc_running():
                    break
                self.bucket.delete(rel)
                if waiting is None:  # the next gc lets us in first
                    waiting = f"{self.WAITING}{uuid.uuid4()}"
                    self.bucket.put(waiting, b"")
                    self._hold(waiting)
                while self._gc_running():
                    time.sleep(LOCK_POLL)
        finally:
            if waiting is not None:
                self._release(waiting)
        self._hold(rel)
        try:
            yield
        finally:
            self._release(rel)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        while self._fresh(self.WAITING):  # writers that waited for the last gc go first
            time.sleep(LOCK_POLL)
        while True:
            try:
                self.bucket.put(self.GC, b"", IfNoneMatch="*")
                break
            except Exception as e:
                if not _precondition_failed(e):
                    raise
                if self._gc_running():
                    raise DockyardError(f"s3://{self.bucket.name}: another gc is running") from None
                self.bucket.delete(self.GC)  # left by a killed gc
        self._hold(self.GC)
        try:
            while self._fresh(self.WRITERS):
                time.sleep(LOCK_POLL)
            yield
        finally:
            self._release(self.GC)


class S3Blobs:
    """Blobs by digest under ``blobs/`` (the :class:`.backend.BlobStore` of S3)."""

    def __init__(self, storage: S3Storage):
        self._storage = storage
        self._bucket = storage.bucket

    @staticmethod
    def key(digest: str) -> str:
        algorithm, hex_part = split_digest(digest)
        return f"blobs/{algorithm}/{hex_part}"

    def has(self, digest: str) -> bool:
        return self._bucket.head(self.key(digest)) is not None

    def size(self, digest: str) -> int:
        found = self._bucket.head(self.key(digest))
        if found is None:
            raise NotFound(f"blob {digest} not found in {self._storage.where}")
        return int(found["ContentLength"])

    def open(self, digest: str, size: int | None = None) -> VerifyingReader:
        return VerifyingReader(self._bucket.open(self.key(digest)), digest, size)

    def read_bytes(self, digest: str, size: int | None = None) -> bytes:
        with self.open(digest, size) as reader:
            data = reader.read()
            reader.check()
        return data

    def write(self, digest: str, stream: BinaryIO, size: int | None = None) -> None:
        """Store a blob read from ``stream`` through a multipart upload, verified."""
        if self.has(digest):
            return
        sink = self._storage.blob_sink(digest)
        try:
            reader = digests.verified(stream, digest, size)
            while chunk := reader.read(CHUNK * 4):
                sink.write(chunk)
            sink.commit()
        finally:
            sink.discard()

    def write_bytes(self, data: bytes, digest: str | None = None) -> str:
        """Store a small blob held in memory (a manifest) after checking its digest."""
        digest = digest or digests.of_bytes(data)
        algorithm, hex_part = split_digest(digest)
        if hashlib.new(algorithm, data).hexdigest() != hex_part:
            raise DigestError(f"blob {digest}: content has another digest")
        if not self.has(digest):
            self._bucket.put(self.key(digest), data)
        return digest

    def __iter__(self) -> Iterator[str]:
        for rel, _ in self._bucket.objects("blobs/"):
            digest = rel.replace("/", ":", 1)
            if names.valid_digest(digest):
                yield digest


class S3Uploads:
    """Upload sessions whose state is in the bucket (any replica may continue one)."""

    def __init__(self, storage: S3Storage):
        self.storage = storage
        self.bucket = storage.bucket
        self._hashes: dict[str, tuple[Any, int]] = {}  # id -> (sha256 so far, bytes hashed)
        self._lock = threading.Lock()

    @staticmethod
    def rel(upload_id: str, part: str) -> str:
        if not names.valid_upload_id(upload_id):
            raise StoreError(f"invalid upload id {upload_id!r}")
        return f"{UPLOADS}/{upload_id}/{part}"

    def start(self, name: str) -> str:
        upload_id = str(uuid.uuid4())
        state: dict[str, Any] = {
            "repository": name,
            "multipart": None,
            "parts": [],
            "size": 0,
            "tail": 0,
        }
        self.save(upload_id, state)
        with self._lock:
            self._hashes[upload_id] = (hashlib.sha256(), 0)
        return upload_id

    def save(self, upload_id: str, state: dict[str, Any]) -> None:
        self.bucket.put(self.rel(upload_id, "state"), json.dumps(state).encode())

    def load(self, upload_id: str) -> dict[str, Any] | None:
        if not names.valid_upload_id(upload_id):
            return None
        raw = self.bucket.get(self.rel(upload_id, "state"), MAX_STATE)
        try:
            state = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        return state if isinstance(state, dict) else None

    def repository(self, upload_id: str) -> str | None:
        state = self.load(upload_id)
        return state.get("repository") if state else None

    def size(self, upload_id: str) -> int:
        state = self.load(upload_id)
        return int(state.get("size", 0)) if state else 0

    def open(self, upload_id: str) -> S3UploadWriter:
        state = self.load(upload_id)
        if state is None:
            raise StoreError(f"no upload {upload_id}")
        return S3UploadWriter(self, upload_id, state)

    def cancel(self, upload_id: str) -> None:
        with self._lock:
            self._hashes.pop(upload_id, None)
        state = self.load(upload_id)
        if state and state.get("multipart"):
            with contextlib.suppress(Exception):
                self.bucket.client.abort_multipart_upload(
                    Bucket=self.bucket.name,
                    Key=self.bucket.key(self.rel(upload_id, "data")),
                    UploadId=state["multipart"],
                )
        for part in ("data", "tail", "state"):
            self.bucket.delete(self.rel(upload_id, part))

    def ids(self) -> list[str]:
        return [u for u in self.bucket.folders(f"{UPLOADS}/") if names.valid_upload_id(u)]

    def last_activity(self, upload_id: str) -> float:
        found = self.bucket.head(self.rel(upload_id, "state"))
        return found["LastModified"].timestamp() if found else 0.0

    def take_hash(self, upload_id: str) -> tuple[Any, int] | None:
        with self._lock:
            return self._hashes.pop(upload_id, None)

    def put_hash(self, upload_id: str, state: tuple[Any, int]) -> None:
        with self._lock:
            self._hashes[upload_id] = state


class S3UploadWriter:
    """Appends to one upload session.

    Whole parts go to the multipart upload as they fill, the rest waits in memory until
    :meth:`close` writes it as the session's tail.
    """

    def __init__(self, uploads: S3Uploads, upload_id: str, state: dict[str, Any]):
        self._uploads = uploads
        self._bucket = uploads.bucket
        self.upload_id = upload_id
        self._state = state
        self.offset = int(state["size"])
        self._buffer = bytearray()
        if state.get("tail"):
            tail = self._bucket.get(uploads.rel(upload_id, "tail"), PART_SIZE)
            if tail is None or len(tail) != state["tail"]:
                raise StoreError(f"upload {upload_id}: its stored tail is missing")
            self._buffer += tail
        saved = uploads.take_hash(upload_id)
        # the hash of every byte so far, if this replica saw them all; else verified at the end
        self._hash = saved[0] if saved is not None and saved[1] == self.offset else None
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        if self._hash is not None:
            self._hash.update(data)
        self.offset += len(data)
        while len(self._buffer) >= PART_SIZE:
            self._upload_part(bytes(memoryview(self._buffer)[:PART_SIZE]))
            del self._buffer[:PART_SIZE]

    def _upload_part(self, data: bytes) -> None:
        state, bucket = self._state, self._bucket
        key = bucket.key(self._uploads.rel(self.upload_id, "data"))
        if not state.get("multipart"):
            made = bucket.client.create_multipart_upload(Bucket=bucket.name, Key=key)
            state["multipart"] = made["UploadId"]
        number = len(state["parts"]) + 1
        done = bucket.client.upload_part(
            Bucket=bucket.name,
            Key=key,
            UploadId=state["multipart"],
            PartNumber=number,
            Body=data,
        )
        state["parts"].append([number, done["ETag"], len(data)])

    def close(self) -> None:
        """Write the tail and the state: the next chunk may come to another replica."""
        if self._closed:
            return
        self._closed = True
        tail = self._uploads.rel(self.upload_id, "tail")
        if self._buffer:
            self._bucket.put(tail, self._buffer)
        self._state["tail"] = len(self._buffer)
        self._state["size"] = self.offset
        self._uploads.save(self.upload_id, self._state)
        if self._hash is not None:
            self._uploads.put_hash(self.upload_id, (self._hash, self.offset))

    def _actual(self, algorithm: str) -> str:
        """The digest of the completed ``data`` object: our hash, or read back."""
        if algorithm == "sha256" and self._hash is not None:
            return f"sha256:{self._hash.hexdigest()}"
        h = hashlib.new(algorithm)
        with contextlib.closing(self._bucket.open(self._uploads.rel(self.upload_id, "data"))) as b:
            for chunk in b.iter_chunks(READ_CHUNK):
                h.update(chunk)
        return f"{algorithm}:{h.hexdigest()}"

    def finish(self, digest: str, storage: S3Storage) -> bool:
        """Verify the bytes are ``digest`` and publish them under ``blobs/``.

        Raises :class:`DigestError` (the session is dropped: nothing is kept) on a
        mismatch; returns False if the blob was there already.
        """
        self._closed = True
        algorithm, _ = split_digest(digest)
        bucket, target = self._bucket, S3Blobs.key(digest)
        try:
            if not self._state["parts"]:  # all of it is in the buffer
                data = bytes(self._buffer)
                actual = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
                if actual != digest:
                    raise DigestError(f"upload has digest {actual}, not {digest}")
                added = not storage.blobs.has(digest)
                if added:
                    bucket.put(target, data)
            else:
                if self._buffer:
                    self._upload_part(bytes(self._buffer))
                    self._buffer.clear()
                data_key = bucket.key(self._uploads.rel(self.upload_id, "data"))
                bucket.client.complete_multipart_upload(
                    Bucket=bucket.name,
                    Key=data_key,
                    UploadId=self._state["multipart"],
                    MultipartUpload={
                        "Parts": [{"PartNumber": n, "ETag": e} for n, e, _ in self._state["parts"]]
                    },
                )
                self._state["multipart"] = None
                actual = self._actual(algorithm)
                if actual != digest:
                    raise DigestError(f"upload has digest {actual}, not {digest}")
                added = not storage.blobs.has(digest)
                if added:  # server-side (multipart for big blobs): no byte comes through us
                    bucket.client.copy(
                        {"Bucket": bucket.name, "Key": data_key}, bucket.name, bucket.key(target)
                    )
        finally:
            self._uploads.cancel(self.upload_id)
        storage.touch_blob(digest)
        return added

    def abort(self) -> None:
        self._closed = True
        self._uploads.cancel(self.upload_id)


class S3Sink:
    """A blob the pull-through cache (or an import) streams in.

    It is an upload session of no repository, so a killed writer's bytes are cleaned by
    gc like any upload's.
    """

    def __init__(self, storage: S3Storage, digest: str):
        self._storage = storage
        self._digest = digest
        uploads = storage.uploads
        self._writer = uploads.open(uploads.start(""))
        self._done = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._writer.write(data)

    def commit(self) -> None:
        self._done = True
        self._writer.finish(self._digest, self._storage)

    def discard(self) -> None:
        if not self._done:
            self._done = True
            self._writer.abort()


class S3Storage(ManifestStore):
    """All repositories of one registry in ``s3://bucket/prefix`` (see the module doc)."""

    def __init__(self, client: Any, bucket: str, prefix: str = ""):
        self.bucket = Bucket(client, bucket, prefix)
        self.where = f"s3://{bucket}/{prefix}"
        self.blobs = S3Blobs(self)
        self.uploads = S3Uploads(self)
        self.lock = BucketLock(self.bucket)
        self._lister_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lister_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: ServerConfig) -> S3Storage:
        bucket, prefix = parse_storage_url(config.storage or "")
        return cls(make_client(config), bucket, prefix)

    def present(self) -> bool:
        try:
            self.bucket.client.head_bucket(Bucket=self.bucket.name)
        except Exception as e:
            if _missing(e):
                return False
            raise
        return True

    def ensure(self) -> None:
        """Create the bucket if there is none (a test store, a first start).

        A store that cannot be reached is a one-line error.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._ensure()
        except (BotoCoreError, ClientError) as e:
            raise StoreError(f"{self.where}: {e}") from None

    def _ensure(self) -> None:
        if not self.present():
            client = self.bucket.client
            region = client.meta.region_name
            kw = (
                {"CreateBucketConfiguration": {"LocationConstraint": region}}
                if region and region != "us-east-1"
                else {}
            )
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=self.bucket.name, **kw)

    def close(self) -> None:
        if self._lister_pool is not None:
            self._lister_pool.shutdown(wait=False)

    def gc_lock(self, *, shared: bool) -> contextlib.AbstractContextManager[None]:
        return self.lock.shared() if shared else self.lock.exclusive()

    # -- repositories ------------------------------------------------------------------

    def repo_exists(self, name: str) -> bool:
        base = repo_key(name)
        return self.bucket.any_under(f"{base}{MANIFESTS}/") or self.bucket.any_under(
            f"{base}{LAYERS}/"
        )

    def repositories(self, last: str | None = None, limit: int | None = None) -> list[str]:
        """Repository names after ``last`` in catalog order, at most ``limit``.

        The tree of names is walked a level at a time (``ListObjectsV2`` with ``/`` as
        delimiter: one entry per namespace, never the objects inside a repository),
        starting after ``last``'s component at each level of its path, and stops once
        ``limit`` names are found; the levels of a batch of siblings are listed at once.
        """
        out: list[str] = []
        want = math.inf if limit is None else limit

        def visit(node: str, rest: list[str] | None, listed: _Level | None = None) -> None:
            # rest: the components of ``last`` below node; None: all of node comes after it
            children, repo = listed or self._level(node, rest[0] if rest else None)
            if rest is None and repo and node:
                out.append(node)
            if rest and names.valid_name(_join(node, rest[0])):
                visit(_join(node, rest[0]), rest[1:])
            i = 0
            while i < len(children) and len(out) < want:
                size = int(min(LIST_BATCH, want - len(out)))  # no more than the page needs
                batch = [_join(node, c) for c in children[i : i + size]]
                i += size
                levels = list(self._lister().map(self._level, batch))
                for child, level in zip(batch, levels, strict=True):
                    if len(out) >= want:
                        return
                    visit(child, None, level)

        if limit is None or limit > 0:
            visit("", names.catalog_order(last) if last else None)
        return out[: len(out) if limit is None else limit]

    def _level(self, node: str, after: str | None = None) -> _Level:
        """The sub-namespaces of ``node`` (``""``: the top) after component ``after``,
        sorted, and whether ``node`` is a repository itself."""
        base = repo_key(node) if node else f"{REPOS}/"
        children, repo = [], False
        for part in self.bucket.folders(base, after):
            if part in (MANIFESTS, LAYERS):
                repo = True
            elif names.valid_name(part) and (after is None or part > after):
                children.append(part)  # a store may list more than asked (S3 puts a/ after a-b)
        return sorted(children), repo

    def _lister(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lister_lock:
            if self._lister_pool is None:
                self._lister_pool = concurrent.futures.ThreadPoolExecutor(
                    LIST_BATCH, thread_name_prefix="s3-list"
                )
            return self._lister_pool

    # -- blobs -------------------------------------------------------------------------

    def _layer(self, name: str, digest: str) -> str:
        algorithm, hex_part = split_digest(digest)
        return f"{repo_key(name)}{LAYERS}/{algorithm}/{hex_part}"

    def blob_size(self, digest: str) -> int | None:
        found = self.bucket.head(S3Blobs.key(digest))
        return None if found is None else int(found["ContentLength"])

    def has_blob(self, name: str, digest: str) -> bool:
        return self.bucket.head(self._layer(name, digest)) is not None and self.blobs.has(digest)

    def linked_blob_size(self, name: str, digest: str) -> int | None:
        """Two ``HEAD`` requests: the repository's link (none: no more asked), the blob."""
        if self.bucket.head(self._layer(name, digest)) is None:
            return None
        return self.blob_size(digest)

    def link_blob(self, name: str, digest: str) -> None:
        self.bucket.put(self._layer(name, digest), b"")
        self.touch_blob(digest)

    def touch_blob(self, digest: str) -> None:
        algorithm, hex_part = split_digest(digest)
        self.bucket.put(f"touched/{algorithm}/{hex_part}", b"")

    def unlink_blob(self, name: str, digest: str) -> bool:
        rel = self._layer(name, digest)
        if self.bucket.head(rel) is None:
            return False
        self.bucket.delete(rel)
        return True

    def linked_blobs(self, name: str) -> list[str]:
        return self._digests_under(f"{repo_key(name)}{LAYERS}/")

    def _digests_under(self, rel_prefix: str) -> list[str]:
        out = []
        for rel, _ in self.bucket.objects(rel_prefix):
            digest = rel.replace("/", ":", 1)
            if names.valid_digest(digest):
                out.append(digest)
        return out

    def blob_file(self, digest: str) -> None:
        return None

    def read_blob(self, digest: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Opens the object now (a missing blob raises here, before any answer starts)."""
        byte_range = None
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            byte_range = f"bytes={start}-{end}"
        body = self.bucket.open(S3Blobs.key(digest), byte_range)

        def chunks() -> Iterator[bytes]:
            with contextlib.closing(body):
                yield from body.iter_chunks(READ_CHUNK)

        return chunks()

    def blob_url(self, digest: str) -> str:
        """A pre-signed ``GET`` of the blob's object for :data:`REDIRECT_TTL` seconds.

        Signed locally: no request to the store.
        """
        return self.bucket.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket.name, "Key": self.bucket.key(S3Blobs.key(digest))},
            ExpiresIn=REDIRECT_TTL,
        )

    def blob_sink(self, digest: str) -> S3Sink:
        return S3Sink(self, digest)

    def blob_age(self, digest: str) -> float | None:
        algorithm, hex_part = split_digest(digest)
        blob = self.bucket.head(S3Blobs.key(digest))
        if blob is None:
            return None
        touched = self.bucket.head(f"touched/{algorithm}/{hex_part}")
        times = [blob["LastModified"]] + ([touched["LastModified"]] if touched else [])
        return _age(max(times))

    def delete_blob_if_idle(self, digest: str, grace: float) -> bool:
        age = self.blob_age(digest)
        if age is None or age < grace:
            return False
        algorithm, hex_part = split_digest(digest)
        self.bucket.delete(S3Blobs.key(digest))
        self.bucket.delete(f"touched/{algorithm}/{hex_part}")
        return True

    def remove_stale(self, older_than: float) -> int:
        """Abort orphaned multipart uploads; drop touch markers of blobs that are gone.

        A multipart upload is orphaned when its session is gone (a replica killed
        between the two).
        """
        client, removed = self.bucket.client, 0
        pages = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket.name, Prefix=self.bucket.key(f"{UPLOADS}/")
        )
        for page in pages:
            for up in page.get("Uploads", ()):
                upload_id = up["Key"][len(self.bucket.key(f"{UPLOADS}/")) :].split("/", 1)[0]
                if _age(up["Initiated"]) > older_than and self.uploads.load(upload_id) is None:
                    with contextlib.suppress(Exception):
                        client.abort_multipart_upload(
                            Bucket=self.bucket.name, Key=up["Key"], UploadId=up["UploadId"]
                        )
                        removed += 1
        # markers and blobs are listed side by side (both in key order, one object of each
        # in memory); a marker whose blob the listing lacks is looked up before it goes
        blobs = (rel for rel, _ in self.bucket.objects("blobs/"))
        blob = next(blobs, None)
        for rel, _ in self.bucket.objects("touched/"):
            while blob is not None and blob < rel:
                blob = next(blobs, None)
            digest = rel.replace("/", ":", 1)
            if blob != rel and names.valid_digest(digest) and not self.blobs.has(digest):
                self.bucket.delete(f"touched/{rel}")
        return removed

    # -- what ManifestStore needs --------------------------------------------------------

    def _get_small(self, key: str, limit: int = SMALL) -> bytes | None:
        return self.bucket.get(key, limit)

    def _put_small(self, key: str, data: bytes) -> None:
        self.bucket.put(key, data)

    def _remove(self, key: str) -> bool:
        if self.bucket.head(key) is None:
            return False
        self.bucket.delete(key)
        return True

    def _exists(self, key: str) -> bool:
        return self.bucket.head(key) is not None

    def _age(self, key: str) -> float | None:
        found = self.bucket.head(key)
        return None if found is None else _age(found["LastModified"])

    def _children(self, prefix: str) -> list[tuple[str, float]]:
        return [
            (rel, obj["LastModified"].timestamp())
            for rel, obj in self.bucket.objects(prefix)
            if "/" not in rel
        ]

    def _manifest_bytes(self, digest: str) -> bytes | None:
        data = self.bucket.get(S3Blobs.key(digest), MAX_MANIFEST_SIZE)
        algorithm, hex_part = split_digest(digest)
        if data is None or hashlib.new(algorithm, data).hexdigest() != hex_part:
            return None
        return data

    def _write_manifest_blob(self, data: bytes, digest: str | None) -> str:
        return self.blobs.write_bytes(data, digest)

    def _has_blob_body(self, digest: str) -> bool:
        return self.blobs.has(digest)

    def touch_tag(self, name: str, tag: str) -> None:
        digest = self.resolve_tag(name, tag)
        if digest is not None:
            self.set_tag(name, tag, digest)
