"""Pull-through cache for many upstream registries at once.

``--upstream quay=https://quay.io`` makes repository ``quay/org/repo`` a mirror of
``quay.io/org/repo`` (Docker Hub's one-component names get ``library/``). containerd's
mirror protocol (``?ns=quay.io``) picks the upstream by host instead, and may name a
host no upstream is configured for if ``--allow-upstream`` permits it (:mod:`nshosts`):
such an upstream is asked anonymously, and its word that it holds a blob we already
have for another repository is not enough -- it must send the bytes. Mirrored content
is stored like any other (blobs in the shared blob dir, manifests and tags in the
repository), plus ``_upstream`` naming the upstream repository, so ``export`` can name
images by their upstream name without any configuration.

Digests are immutable: once cached they are served forever. A tag is served from the
cache for its TTL, then re-checked upstream with a ``HEAD``; if the upstream cannot be
reached, the cached tag is served anyway, marked stale. A blob that is not cached yet
streams to the client while it is written to the cache (one pass, bounded memory); it
becomes visible in the cache only when complete and verified. A manifest from upstream
passes the checks a pushed one does (:mod:`manifest_checks`); one that fails them, is
too big or does not match its digest is a 502 to the client and is not cached.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from dockyard.errors import DigestError, ManifestError, RegistryError
from dockyard.oci.descriptor import Descriptor
from dockyard.registry.server import egress, fetch, manifest_checks, names, nshosts
from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.backend import RegistryStorage
from dockyard.registry.server.config import ServerConfig, UpstreamConfig
from dockyard.registry.server.manifeststore import StoredManifest, referrer_info

log = logging.getLogger("dockyard.registry.server")

BATCH = 1 << 20  # bytes handed to the client at a time
READ_SIZE = 1 << 20
QUEUE_DEPTH = 8  # batches buffered per download: memory stays bounded
DOWN_BACKOFF = 5.0  # seconds an unreachable upstream is not asked again for tags
MAX_NAMED_UPSTREAMS = 64  # clients' ?ns= upstreams kept (clients) at once, least recent out
_PROXIED = any(
    os.environ.get(v)
    for v in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
)
Chunk = bytes | memoryview  # what a streamed body yields
STALE_HEADERS = {"Warning": '110 - "Response is Stale"', "X-Dockyard-Stale": "true"}


class Unavailable(Exception):
    """The upstream could not be asked (down, timing out, 5xx, 429)."""


class Unknown(Exception):
    """The upstream says it has no such thing (404, or 401/403 for a missing repo)."""


class Upstream:
    """One configured upstream registry and its (lazily made) client.

    ``guarded``: a host a client named under ``--allow-upstream '*'``, reached only at
    public addresses (:mod:`.egress`).
    """

    def __init__(self, config: UpstreamConfig, server: ServerConfig, *, guarded: bool = False):
        self.config = config
        self.guarded = guarded
        self.name = config.name
        self.ttl = config.tag_ttl if config.tag_ttl is not None else server.tag_ttl
        self._attempts = max(1, server.upstream_attempts)
        self._client = None
        self._lock = threading.Lock()
        self.down_until = 0.0  # after a failure, tags are served stale without asking

    def mark_down(self) -> None:
        self.down_until = time.monotonic() + DOWN_BACKOFF

    @property
    def is_down(self) -> bool:
        return time.monotonic() < self.down_until

    @property
    def client(self):
        from dockyard.registry.client import Credentials, RegistryClient, RetryPolicy

        with self._lock:
            if self._client is None:
                c = self.config
                credentials = None
                if c.username or c.password or not c.trusted:  # a client's host: anonymous
                    credentials = Credentials(c.username or "", c.password or "")
                tls_verify = (not c.insecure) if c.scheme == "https" else False
                self._client = RegistryClient(
                    c.host,
                    tls_verify=tls_verify,
                    credentials=credentials,
                    retry=RetryPolicy(attempts=self._attempts, base_delay=0.2, max_delay=2.0),
                    max_connections=64,
                    timeout=60.0,
                    transport=egress.GuardedTransport(64) if self.guarded else None,
                )
            return self._client

    def remote_path(self, path: str) -> str:
        """The repository at the upstream for a path under our prefix."""
        if self.config.is_docker_hub and "/" not in path:
            return f"library/{path}"
        return path

    def external_name(self, remote_path: str) -> str:
        """The image name as users know it: ``quay.io/org/repo``."""
        return f"{self.config.canonical_host}/{remote_path}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


@dataclass(frozen=True)
class Route:
    """A repository served from an upstream: ``local`` is where its cache lives."""

    upstream: Upstream
    remote: str
    local: str


def _classify(error: Exception) -> Exception:
    if isinstance(error, RegistryError) and error.status in (401, 403, 404):
        return Unknown(str(error))
    if isinstance(error, RegistryError | OSError):
        return Unavailable(str(error))
    return error


class Mirror:
    """Routes repositories to upstreams and fills the cache from them."""

    def __init__(self, storage: RegistryStorage, config: ServerConfig):
        self.storage = storage
        self.config = config
        self.upstreams = [Upstream(u, config) for u in config.upstreams]
        self.allowed = nshosts.AllowList(config.allow_upstreams)
        self._named: OrderedDict[str, Upstream] = OrderedDict()  # host -> client-named
        self._named_lock = threading.Lock()
        # longest prefix first, so "a/b" wins over "a"
        self._by_prefix = sorted(self.upstreams, key=lambda u: -len(u.name))
        self._pool = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="mirror")
        self._tasks: set[asyncio.Task] = set()  # downloads under way

    def warm_up(self) -> None:
        """Make the upstream clients now (imports, TLS contexts), not on the first pull."""
        for upstream in self.upstreams:
            upstream.client  # noqa: B018 - made on first use

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for upstream in [*self.upstreams, *self._named.values()]:
            upstream.close()

    # -- routing -------------------------------------------------------------------------

    def route(self, name: str, ns: str | None = None) -> Route | None:
        """The upstream serving repository ``name`` (``ns``: containerd's mirror host).

        A ``ns`` host no upstream is configured for is served if the allow-list permits
        it, and refused (403) if there is an allow-list that does not; with none, ``ns``
        is ignored (``name`` is then an ordinary repository)."""
        if ns:
            host = "docker.io" if ns in ("index.docker.io", "registry-1.docker.io") else ns
            for upstream in self.upstreams:
                if upstream.config.canonical_host == host or upstream.config.host == ns:
                    remote = upstream.remote_path(name)
                    return self._route(upstream, remote)
            if self.allowed:
                named = self._named_upstream(ns)
                return self._route(named, named.remote_path(name))
        for upstream in self._by_prefix:
            if name.startswith(upstream.name + "/"):
                remote = upstream.remote_path(name[len(upstream.name) + 1 :])
                return self._route(upstream, remote)
        if self.allowed and name.startswith(nshosts.NS_PREFIX + "/"):
            # the cache of a client-named upstream, read by its own name
            component, _, rest = name[len(nshosts.NS_PREFIX) + 1 :].partition("/")
            cached = nshosts.host_of_prefix(component)
            if cached is not None and rest and self.allowed.permits(cached):
                named = self._named_upstream(cached)
                return self._route(named, named.remote_path(rest))
        return None

    def _named_upstream(self, ns: str) -> Upstream:
        """The upstream for a host a client named; 403 unless the allow-list permits it."""
        host = nshosts.normalize_host(ns)
        if host is None or not self.allowed.permits(host):
            raise APIError(
                "DENIED",
                f"upstream {ns!r} is not allowed here (registry serve --allow-upstream)",
                detail={"ns": ns},
            )
        guarded = host not in self.allowed.hosts  # allowed only by "*"
        if guarded and egress.literal_refused(host):
            raise _not_public(ns, f"{host} is not a public address")
        with self._named_lock:
            upstream = self._named.get(host)
            if upstream is None:
                config = UpstreamConfig(
                    nshosts.cache_prefix(host), nshosts.url_of(host), trusted=False
                )
                upstream = self._named[host] = Upstream(config, self.config, guarded=guarded)
                while len(self._named) > MAX_NAMED_UPSTREAMS:  # in-flight users keep theirs
                    self._named.popitem(last=False)
            self._named.move_to_end(host)
            return upstream

    def _route(self, upstream: Upstream, remote: str) -> Route | None:
        local = f"{upstream.name}/{remote}"
        if not names.valid_name(local) or not names.valid_name(remote):
            return None
        return Route(upstream, remote, local)

    def is_mirrored(self, name: str) -> bool:
        """``name`` is (under) a cache: no push may write there."""
        prefixes = [u.name for u in self.upstreams]
        if self.allowed:
            prefixes.append(nshosts.NS_PREFIX)
        return any(name == p or name.startswith(p + "/") for p in prefixes)

    # -- upstream calls (run in threads) ---------------------------------------------------

    async def _call(self, fn, *args):
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, *args)
        except egress.NotPublic as e:
            raise _not_public(None, str(e)) from None
        except (RegistryError, OSError) as e:
            raise _classify(e) from e

    def _remember(self, route: Route) -> None:
        if self.storage.upstream_name(route.local) is None:
            self.storage.set_upstream_name(route.local, route.upstream.external_name(route.remote))

    def _store(
        self, route: Route, got, tag: str | None, digest: str | None = None
    ) -> StoredManifest:
        """Check and cache a manifest from upstream; ``digest``: the one it was asked
        by (a ``sha512:`` digest is kept as given, verified against the bytes)."""
        manifest_checks.check(got.data, got.media_type)  # nothing bad reaches the cache
        self._remember(route)
        with self.storage.gc_lock(shared=True):
            stored = self.storage.put_manifest(
                route.local,
                got.data,
                got.media_type,
                (tag,) if tag else (),
                digest=digest,
                **referrer_info(got.data),
            )
        return StoredManifest(got.data, got.media_type, stored)

    def _fetch_manifest(self, route: Route, reference: str) -> StoredManifest:
        got = route.upstream.client.get_manifest(route.remote, reference)
        if names.is_digest_like(reference):
            return self._store(route, got, None, reference)
        return self._store(route, got, reference)

    def _revalidate(self, route: Route, tag: str, cached: StoredManifest) -> StoredManifest:
        desc = route.upstream.client.head_manifest(route.remote, tag)
        if desc is None:
            raise Unknown(f"{route.upstream.external_name(route.remote)}:{tag}")
        if desc.digest == cached.digest:
            self.storage.touch_tag(route.local, tag)
            return cached
        have = self.storage.get_manifest(route.local, desc.digest)
        if have is not None:
            with self.storage.gc_lock(shared=True):
                self.storage.set_tag(route.local, tag, desc.digest)
            return have
        got = route.upstream.client.get_manifest(route.remote, desc.digest)
        return self._store(route, got, tag, desc.digest)

    # -- what the API handlers call ------------------------------------------------------------

    async def manifest(self, route: Route, reference: str) -> tuple[StoredManifest, bool]:
        """The manifest for a tag or digest, and whether it is stale (upstream down)."""
        storage = self.storage
        loop = asyncio.get_running_loop()
        cached = await loop.run_in_executor(
            self._pool, storage.get_manifest, route.local, reference
        )
        if names.is_digest_like(reference):
            if cached is not None:
                return cached, False
            try:
                return await self._call(self._fetch_manifest, route, reference), False
            except Unknown:
                raise APIError("MANIFEST_UNKNOWN", detail={"reference": reference}) from None
            except Unavailable as e:
                raise APIError("UNAVAILABLE", f"upstream unavailable: {e}") from None
            except (DigestError, ManifestError) as e:
                raise _bad_manifest(route, reference, e) from None
        if cached is not None:
            age = await loop.run_in_executor(self._pool, storage.tag_age, route.local, reference)
            if age is not None and age < route.upstream.ttl:
                return cached, False
        try:
            if cached is not None:
                if route.upstream.is_down:
                    raise Unavailable("failed moments ago")
                return await self._call(self._revalidate, route, reference, cached), False
            return await self._call(self._fetch_manifest, route, reference), False
        except Unknown:
            raise APIError("MANIFEST_UNKNOWN", detail={"tag": reference}) from None
        except (Unavailable, DigestError, ManifestError) as e:
            if isinstance(e, Unavailable) and not route.upstream.is_down:
                route.upstream.mark_down()
            if cached is None and not isinstance(e, Unavailable):
                raise _bad_manifest(route, reference, e) from None
            if cached is None:
                raise APIError("UNAVAILABLE", f"upstream unavailable: {e}") from None
            log.warning(
                "upstream %s unreachable (%s): serving cached %s:%s (stale)",
                route.upstream.name,
                e,
                route.local,
                reference,
            )
            return cached, True

    async def blob_size(self, route: Route, digest: str) -> int | None:
        try:
            return await self._call(route.upstream.client.stat_blob, route.remote, digest)
        except Unknown:
            return None
        except Unavailable as e:
            raise APIError("UNAVAILABLE", f"upstream unavailable: {e}") from None

    async def tags(self, route: Route) -> list[str] | None:
        try:
            return await self._call(route.upstream.client.list_tags, route.remote)
        except (Unknown, Unavailable):
            return None

    async def stream_blob(
        self, route: Route, digest: str
    ) -> tuple[AsyncIterator[Chunk], int] | None:
        """The blob's bytes from the upstream and its size, teed into the cache.

        The bytes are written to the cache as they pass; None if the upstream does not
        have it.

        If the client goes away, the download still finishes into the cache (the next
        pull is a hit). A digest mismatch aborts the answer and keeps nothing; the last
        bytes are held back until the digest is verified, so a client never gets a
        complete answer with wrong content. The first batch is awaited before the answer
        starts: a lie found by then (any blob up to one batch) is a 502, not a cut-off.
        """
        self._remember(route)
        if not _PROXIED:  # the plain case: one GET, its Content-Length is the size
            try:
                body = await self._open_direct(route, digest)
            except fetch.Fallback as e:
                log.debug("mirror %s@%s: general client (%s)", route.local, digest, e)
            else:
                tee = self._tee(route, digest, self._direct_source(body, digest))
                return await _started(route, digest, tee), body.size
        size = await self.blob_size(route, digest)
        if size is None:
            return None
        tee = self._tee(route, digest, self._threaded_source(route, digest, size))
        return await _started(route, digest, tee), size

    async def _open_direct(self, route: Route, digest: str) -> fetch.BlobBody:
        client = route.upstream.client

        def prepare() -> tuple[str, str | None]:
            from dockyard.registry.client import pull_scope

            return client.base_url, client.auth.authorization((pull_scope(route.remote),))

        try:
            base, authorization = await self._call(prepare)
        except (Unknown, Unavailable) as e:
            raise fetch.Fallback(str(e)) from e
        verify = base.startswith("https://") and not route.upstream.config.insecure
        url = f"{base}/v2/{route.remote}/blobs/{digest}"
        try:
            return await fetch.open_blob(
                url, authorization, verify=verify, batch=BATCH, guarded=route.upstream.guarded
            )
        except egress.NotPublic as e:
            raise _not_public(None, str(e)) from None

    async def _direct_source(self, body: fetch.BlobBody, digest: str):
        """Batches from the lean fetcher, each written and hashed in a thread while the
        next arrives; yields ``(batch, writer)`` pairs and finally ``(None, check)``."""
        algorithm = digest.split(":", 1)[0]
        h = hashlib.new(algorithm)
        async for batch in body.batches():

            def write(f, b=batch) -> None:
                f.write(b)
                h.update(b)

            yield batch, write

        def check() -> None:
            actual = f"{algorithm}:{h.hexdigest()}"
            if actual != digest:
                raise DigestError(f"upstream blob {digest} has digest {actual}")

        yield None, check

    async def _threaded_source(self, route: Route, digest: str, size: int):
        """Batches from the general client (redirect chains, proxies, chunked answers):
        read in a thread, verified by the client's reader at EOF."""
        loop = asyncio.get_running_loop()
        desc = Descriptor("application/octet-stream", digest, size)
        opened = route.upstream.client.open_blob(route.remote, desc)
        reader = await loop.run_in_executor(self._pool, opened.__enter__)
        try:

            def read() -> bytes:
                parts, got = [], 0
                while got < BATCH and (data := reader.read(READ_SIZE)):
                    parts.append(data)
                    got += len(data)
                return b"".join(parts)

            while batch := await loop.run_in_executor(self._pool, read):
                yield batch, lambda f, b=batch: f.write(b)
            yield None, lambda: None  # the reader verified the digest at EOF
        finally:
            await loop.run_in_executor(self._pool, opened.__exit__, None, None, None)

    def _tee(self, route: Route, digest: str, source) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_DEPTH)
        state = {"detached": False}
        storage = self.storage

        async def put(item: object) -> None:
            if not state["detached"]:
                await queue.put(item)

        async def pump() -> None:
            sink = None
            pending: asyncio.Future | None = None
            try:
                sink = await loop.run_in_executor(self._pool, storage.blob_sink, digest)
                held = None
                async for batch, write in source:
                    if pending is not None:
                        await pending
                        pending = None
                    if batch is None:
                        write()  # the digest check
                        break
                    pending = loop.run_in_executor(self._pool, write, sink)
                    if held is not None:
                        await put(held)
                    held = batch
                if held is not None:
                    await put(held)
                await put(None)
                await loop.run_in_executor(self._pool, sink.commit)
                await loop.run_in_executor(self._pool, storage.link_blob, route.local, digest)
            except BaseException as e:
                if not state["detached"]:
                    log.error("mirror %s: fetching %s failed: %s", route.local, digest, e)
                await put(e)
                if not isinstance(e, Exception):
                    raise
            finally:
                if pending is not None:
                    with contextlib.suppress(BaseException):
                        await pending
                with contextlib.suppress(BaseException):
                    await source.aclose()
                if sink is not None:
                    await loop.run_in_executor(self._pool, sink.discard)

        task = loop.create_task(pump())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

        async def body() -> AsyncIterator[Chunk]:
            try:
                while True:
                    item = await queue.get()
                    if item is None:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield memoryview(item) if isinstance(item, bytearray) else item
            finally:
                state["detached"] = True  # the download goes on into the cache
                while not queue.empty():
                    queue.get_nowait()

        return body()


def _not_public(ns: str | None, why: str) -> APIError:
    """403 for a client-named upstream at an address of the registry's own networks."""
    return APIError(
        "DENIED",
        f"upstream refused: {why} (name it with --allow-upstream to allow it)",
        detail={"ns": ns} if ns else None,
    )


def _bad_manifest(route: Route, reference: str, error: Exception) -> APIError:
    """502 for a manifest the upstream sent that we refuse (and did not cache)."""
    where = f"{route.upstream.external_name(route.remote)}:{reference}"
    log.error("mirror %s: upstream sent a bad manifest for %s: %s", route.local, where, error)
    return APIError(
        "MANIFEST_INVALID",
        f"upstream {route.upstream.name} sent a bad manifest for {where}: {error}",
        status=502,
    )


async def _started(route: Route, digest: str, body: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    """``body`` with its first batch already received; an upstream failure by then
    raises a 502 (a lie) or 503 (unreachable) before the answer starts."""
    try:
        first = await anext(body)
    except StopAsyncIteration:
        first = None
    except DigestError as e:
        raise APIError(
            "DIGEST_INVALID",
            f"upstream {route.upstream.name} sent wrong bytes for {digest}: {e}",
            detail={"digest": digest},
            status=502,
        ) from None
    except (OSError, RegistryError) as e:
        raise APIError("UNAVAILABLE", f"upstream unavailable: {e}") from None

    async def rest() -> AsyncIterator[Chunk]:
        if first is None:
            return
        yield first
        async for batch in body:
            yield batch

    return rest()
