"""``RegistryClient``: the OCI distribution (Docker registry v2) API for one host.

One ``httpx.Client`` per host with a connection pool for parallel blob transfers; plain
HTTP for loopback hosts (as docker does), HTTPS otherwise, and for insecure hosts
(``tls_verify=False`` or ``insecure = true`` in ``registries.toml``) HTTPS without
certificate checks, falling back to HTTP. Transient failures are retried with backoff;
uploads restart from a fresh session with the bytes re-opened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpx

from dockyard import __version__
from dockyard.errors import DigestError, ManifestError, RegistryError
from dockyard.oci import digest as digests
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.digest import CHUNK, VerifyingReader
from dockyard.oci.home import RawManifest
from dockyard.oci.streams import ReadCloser
from dockyard.reference import is_loopback_host
from dockyard.registry.client import config as registries
from dockyard.registry.client.auth import (
    CATALOG_SCOPE,
    Authenticator,
    delete_scope,
    pull_scope,
    push_scope,
)
from dockyard.registry.client.credentials import Credentials
from dockyard.registry.client.download import ResumingStream
from dockyard.registry.client.errors import response_error, transport_error
from dockyard.registry.client.retry import (
    RetryPolicy,
    call_with_retries,
    is_transient,
    log,
    retryable_status,
    stall_timeout,
)
from dockyard.registry.client.tls import LazyTrustContext
from dockyard.registry.client.upload import Opener, StreamNotReopenable, verified_chunks

MANIFEST_ACCEPT = mt.MANIFEST_ACCEPT
MAX_MANIFEST_SIZE = 4 << 20  # distribution's own limit
DEFAULT_CHUNK_SIZE = 8 << 20  # PATCH size when a registry refuses whole-blob PUTs
_ERROR_BODY_LIMIT = 64 << 10
_OK = range(200, 300)


class RegistryManifest(RawManifest):
    """A manifest as the registry served it, with its digest (verified against the bytes)."""

    __slots__ = ("digest",)
    digest: str

    def __init__(self, data: bytes, media_type: str, digest: str) -> None:
        self._set(data=data, media_type=media_type, digest=digest)


class _Restart(Exception):
    """An upload attempt failed in a way a fresh upload session may not."""

    def __init__(self, error: RegistryError, *, too_large: bool = False):
        super().__init__(str(error))
        self.error = error
        self.too_large = too_large


def _name(repository: str, reference: str) -> str:
    return f"{repository}@{reference}" if ":" in reference else f"{repository}:{reference}"


def _digest_of(data: bytes, like: str) -> str:
    """The digest of ``data`` with the algorithm of digest ``like``."""
    h = digests.hasher(like)
    h.update(data)
    return f"{h.name}:{h.hexdigest()}"


def _tune_httpcore() -> None:
    """Read answers 1 MiB at a time instead of httpcore's 64 KiB: per-read overhead,
    not bandwidth, limits a Python client on a fast link (450 -> 820 MB/s hashed).
    A class attribute of httpcore's; harmless if httpcore changes."""
    try:
        from httpcore._sync.http11 import HTTP11Connection
    except ImportError:
        return
    if getattr(HTTP11Connection, "READ_NUM_BYTES", None) == 64 * 1024:
        HTTP11Connection.READ_NUM_BYTES = 1 << 20


_tune_httpcore()


class RegistryClient:
    """The distribution API of one registry ``host`` (``host[:port]``, as in references).

    ``credentials`` None looks them up in docker/podman auth files when first challenged.
    ``tls_verify`` None means: HTTP for loopback, ``registries.toml`` for the rest.
    ``timeout`` is how many seconds the registry may send (or take) no bytes before a
    try fails, ``$DOCKYARD_REGISTRY_TIMEOUT`` (default 30) if None; replayable requests
    are then retried, downloads resumed. ``chunk_size`` forces chunked (PATCH) uploads;
    by default a blob goes in one PUT and chunks are used only if the registry refuses
    that (413). ``transport`` replaces the httpx transport (the pool size and TLS
    settings then are the transport's).
    Safe to use from many threads.
    """

    def __init__(
        self,
        host: str,
        *,
        tls_verify: bool | None = None,
        credentials: Credentials | None = None,
        retry: RetryPolicy | None = None,
        chunk_size: int | None = None,
        max_connections: int = 16,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.host = host
        self.retry = retry or RetryPolicy()
        if timeout is None:
            timeout = stall_timeout()
        self.chunk_size = chunk_size
        self._base: str | None  # scheme://host, None until an insecure host is probed
        if tls_verify is not True and is_loopback_host(host):
            insecure, self._base = False, f"http://{host}"
        else:
            insecure = tls_verify is False or (
                tls_verify is None and registries.load().insecure(host)
            )
            self._base = None if insecure else f"https://{host}"
        self._http = httpx.Client(
            verify=False if insecure else LazyTrustContext(),
            # A stall fails a try after ``timeout``; waiting for a free connection
            # is not bounded: the transfers holding them are, by their own stalls.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0), pool=None),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"User-Agent": f"dockyard/{__version__}"},
            transport=transport,
        )
        self._lock = threading.Lock()
        self.auth = Authenticator(host, self._http, self.retry, credentials)

    def __repr__(self) -> str:
        return f"RegistryClient({self.host!r})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``scheme://host``; an insecure host is probed once: HTTPS, else plain HTTP."""
        with self._lock:
            if self._base is None:
                try:
                    self._http.get(f"https://{self.host}/v2/", timeout=10.0).close()
                    self._base = f"https://{self.host}"
                except httpx.TransportError:
                    self._base = f"http://{self.host}"
            return self._base

    def _url(self, path: str) -> httpx.URL:
        return httpx.URL(f"{self.base_url}/v2/{path}")

    def _send(
        self,
        method: str,
        url: httpx.URL,
        *,
        scopes: tuple[str, ...],
        what: str,
        ok: Collection[int] = _OK,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        max_manifest: int | None = None,
    ) -> httpx.Response:
        """Send a replayable request with auth and retries; return the answer if its status
        is in ``ok`` (a streamed one for the caller to close), else raise.

        With ``max_manifest`` the body of an ``ok`` answer is read within the try (so a
        stall or reset in it is retried like one before it), at most that many bytes:
        past them :class:`ManifestError`.
        """

        def once(authorization: str | None) -> httpx.Response:
            request = self._http.build_request(
                method, url, params=params, content=content, headers=headers
            )
            if authorization:
                request.headers["Authorization"] = authorization
            streamed = stream or max_manifest is not None
            return self._http.send(request, stream=streamed, follow_redirects=follow_redirects)

        def attempt() -> httpx.Response:
            authorization = self.auth.authorization(scopes)
            response = once(authorization)
            if response.status_code == 401 and self.auth.challenged(
                response, scopes, authorization
            ):
                response.close()
                response = once(self.auth.authorization(scopes))
            if max_manifest is not None and response.status_code in ok:
                return self._read_manifest(response, max_manifest, what)
            return response

        try:
            response = call_with_retries(self.retry, attempt, f"{self.host}: {method} {what}")
        except httpx.TransportError as e:
            tries = self.retry.attempts if is_transient(e) else 1
            raise transport_error(self.host, what, e, tries) from e
        if response.status_code not in ok:
            raise self._error(response, what)
        return response

    def _send_once(
        self,
        method: str,
        url: httpx.URL,
        *,
        scopes: tuple[str, ...],
        what: str,
        ok: Collection[int],
        headers: dict[str, str],
        content: bytes | Iterator[bytes],
    ) -> httpx.Response:
        """Send an upload request whose body cannot be replayed: anything a retry could
        cure raises :class:`_Restart` so the caller starts a fresh upload."""
        request = self._http.build_request(method, url, content=content, headers=headers)
        authorization = self.auth.authorization(scopes)
        if authorization:
            request.headers["Authorization"] = authorization
        try:
            response = self._http.send(request)
        except httpx.TransportError as e:
            if is_transient(e):
                raise _Restart(transport_error(self.host, what, e)) from e
            raise transport_error(self.host, what, e) from e
        if response.status_code in ok:
            return response
        error = self._error(response, what)
        status = response.status_code
        if status == 413:
            raise _Restart(error, too_large=True)
        if retryable_status(status) or (
            status == 401 and self.auth.challenged(response, scopes, authorization)
        ):
            raise _Restart(error)
        raise error

    def _read_manifest(self, response: httpx.Response, limit: int, what: str) -> httpx.Response:
        """The streamed answer ``response`` read whole (at most ``limit`` bytes, decoded)
        and closed: an answer holding those bytes."""
        data = bytearray()
        try:
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > limit:
                    raise ManifestError(
                        f"registry {self.host}: manifest {what} is over {limit} bytes"
                    )
        finally:
            response.close()
        decoded = [(k, v) for k, v in response.headers.multi_items() if k != "content-encoding"]
        return httpx.Response(
            response.status_code, headers=decoded, content=bytes(data), request=response.request
        )

    def _error(self, response: httpx.Response, what: str) -> RegistryError:
        """The error for a failed answer, reading at most a little of its body."""
        body = bytearray()
        try:
            if response.is_stream_consumed:
                body += response.content[:_ERROR_BODY_LIMIT]
            else:
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) >= _ERROR_BODY_LIMIT:
                        break
        except httpx.TransportError:
            pass  # the status says enough
        finally:
            response.close()
        return response_error(self.host, what, response.status_code, bytes(body))

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise RegistryError(f"registry {self.host}: {what}: answer is not a JSON object")
        return doc

    def ping(self) -> None:
        """``GET /v2/``, authenticating if challenged: checks reachability and credentials."""
        self._send("GET", self._url(""), scopes=(), what="GET /v2/", ok=(200,))

    # -- manifests --------------------------------------------------------------------

    def get_manifest(
        self, repository: str, reference: str, accept: str = MANIFEST_ACCEPT
    ) -> RegistryManifest:
        """The manifest or index at a tag or digest, byte for byte as served.

        Its digest is checked against the requested digest, or against the registry's
        ``Docker-Content-Digest`` when fetched by tag.
        """
        what = _name(repository, reference)
        response = self._send(
            "GET",
            self._url(f"{repository}/manifests/{reference}"),
            scopes=(pull_scope(repository),),
            what=what,
            ok=(200,),
            headers={"Accept": accept},
            max_manifest=MAX_MANIFEST_SIZE,
        )
        data = response.content
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if media_type not in mt.ALL_MANIFESTS:
            with suppress(ManifestError):  # not an image manifest: keep the served type
                media_type = manifests.detect_media_type(data, None, what)
        claimed = reference if ":" in reference else response.headers.get("docker-content-digest")
        if claimed:
            actual = _digest_of(data, digests.validate(claimed))
            if actual != claimed:
                raise DigestError(f"manifest {what}: expected {claimed}, content has {actual}")
        return RegistryManifest(bytes(data), media_type, claimed or digests.of_bytes(data))

    def head_manifest(
        self, repository: str, reference: str, accept: str = MANIFEST_ACCEPT
    ) -> Descriptor | None:
        """The descriptor of a tag or digest, or None if the registry does not have it."""
        what = _name(repository, reference)
        response = self._send(
            "HEAD",
            self._url(f"{repository}/manifests/{reference}"),
            scopes=(pull_scope(repository),),
            what=what,
            ok=(200, 404),
            headers={"Accept": accept},
        )
        if response.status_code == 404:
            return None
        digest = response.headers.get("docker-content-digest")
        size = response.headers.get("content-length", "")
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if not digest or not size.isdigit() or not media_type:
            got = self.get_manifest(repository, reference, accept)
            return Descriptor(got.media_type, got.digest, len(got.data))
        return Descriptor(media_type, digests.validate(digest), int(size))

    def put_manifest(self, repository: str, reference: str, manifest: RawManifest) -> str:
        """Store a manifest under a tag or its digest; return its digest."""
        what = _name(repository, reference)
        digest = digests.of_bytes(manifest.data)
        if ":" in reference:
            digest = _digest_of(manifest.data, digests.validate(reference))
            if digest != reference:
                raise DigestError(f"manifest {what}: content has digest {digest}")
        response = self._send(
            "PUT",
            self._url(f"{repository}/manifests/{reference}"),
            scopes=(push_scope(repository),),
            what=what,
            headers={"Content-Type": manifest.media_type},
            content=manifest.data,
        )
        stored = response.headers.get("docker-content-digest")
        if stored and stored.split(":")[0] == digest.split(":")[0] and stored != digest:
            raise DigestError(f"manifest {what}: registry stored it as {stored}, not {digest}")
        return digest

    def delete_manifest(self, repository: str, reference: str) -> None:
        """Delete a manifest (by digest; registries that allow it, by tag)."""
        self._send(
            "DELETE",
            self._url(f"{repository}/manifests/{reference}"),
            scopes=(delete_scope(repository),),
            what=_name(repository, reference),
        )

    # -- blobs ------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        """Whether the repository holds the blob (``HEAD``)."""
        return self._head_blob(repository, digest).status_code == 200

    def stat_blob(self, repository: str, digest: str) -> int | None:
        """The blob's size, or None if the repository does not hold it (``HEAD``)."""
        response = self._head_blob(repository, digest)
        if response.status_code == 404:
            return None
        size = response.headers.get("content-length", "")
        if not size.isdigit():
            raise RegistryError(
                f"registry {self.host}: {repository}@{digest}: HEAD answer has no Content-Length"
            )
        return int(size)

    def _head_blob(self, repository: str, digest: str) -> httpx.Response:
        return self._send(
            "HEAD",
            self._url(f"{repository}/blobs/{digest}"),
            scopes=(pull_scope(repository),),
            what=f"{repository}@{digest}",
            ok=(200, 404),
            follow_redirects=True,
        )

    @contextmanager
    def open_blob(self, repository: str, desc: Descriptor) -> Iterator[VerifyingReader]:
        """A stream of the blob (following redirects); reading it to EOF verifies it.

        Memory stays bounded; a dropped connection resumes where it stopped.
        """
        what = f"{repository}@{desc.digest}"
        url = self._url(f"{repository}/blobs/{desc.digest}")

        def fetch(offset: int) -> httpx.Response:
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            return self._send(
                "GET",
                url,
                scopes=(pull_scope(repository),),
                what=what,
                ok=(200, 206) if offset else (200,),
                headers=headers,
                stream=True,
                follow_redirects=True,
            )

        stream = ResumingStream(fetch, self.retry, f"registry {self.host}: reading {what}")
        with VerifyingReader(stream, desc.digest, desc.size) as reader:
            yield reader

    def upload_blob(
        self,
        repository: str,
        desc: Descriptor,
        open_stream: Opener,
        *,
        mount_from: str | None = None,
    ) -> bool:
        """Upload a blob; return True if it was mounted from ``mount_from`` instead.

        ``open_stream`` is called once per attempt and must give the bytes from the start
        (or raise :class:`StreamNotReopenable`). A transient failure restarts the upload
        from a fresh session. The bytes are checked against ``desc`` before the last of
        them is sent, so a wrong blob is never committed.
        """
        what = f"{repository}@{desc.digest}"
        scopes: tuple[str, ...] = (push_scope(repository),)
        if mount_from:
            scopes += (pull_scope(mount_from),)
        chunk_size = self.chunk_size
        error: RegistryError | None = None
        failures = 0
        while True:
            location = self._start_upload(repository, desc.digest, mount_from, scopes, what)
            if location is None:
                return True
            try:
                opened = open_stream()
            except StreamNotReopenable:
                if error is None:
                    raise
                raise error from None
            try:
                with opened as stream:
                    if chunk_size:
                        self._put_chunks(location, desc, stream, chunk_size, scopes, what)
                    else:
                        self._put_whole(location, desc, stream, scopes, what)
                return False
            except _Restart as restart:
                error = restart.error
                if restart.too_large and not chunk_size:
                    chunk_size = DEFAULT_CHUNK_SIZE
                    continue
            failures += 1
            if failures >= self.retry.attempts:
                raise error
            wait = self.retry.delay(failures - 1)
            log.debug("%s: upload %s: %s; restarting in %.1fs", self.host, what, error, wait)
            time.sleep(wait)

    def _start_upload(
        self,
        repository: str,
        digest: str,
        mount_from: str | None,
        scopes: tuple[str, ...],
        what: str,
    ) -> httpx.URL | None:
        """Open an upload session and return its URL; None if the blob was mounted."""
        params = {"mount": digest, "from": mount_from} if mount_from else None
        response = self._send(
            "POST",
            self._url(f"{repository}/blobs/uploads/"),
            scopes=scopes,
            what=what,
            ok=(201, 202) if mount_from else (202,),
            params=params,
        )
        if response.status_code == 201:
            return None
        return self._location(response, what)

    def _location(self, response: httpx.Response, what: str) -> httpx.URL:
        location = response.headers.get("location")
        if not location:
            raise RegistryError(
                f"registry {self.host}: upload {what}: answer {response.status_code} has no"
                " Location"
            )
        return response.url.join(location)

    def _put_whole(
        self,
        location: httpx.URL,
        desc: Descriptor,
        stream: ReadCloser,
        scopes: tuple[str, ...],
        what: str,
    ) -> None:
        response = self._send_once(
            "PUT",
            location.copy_merge_params({"digest": desc.digest}),
            scopes=scopes,
            what=what,
            ok=(201,),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
            content=verified_chunks(stream, desc, CHUNK),
        )
        self._check_stored(response, desc, what)

    def _put_chunks(
        self,
        location: httpx.URL,
        desc: Descriptor,
        stream: ReadCloser,
        chunk_size: int,
        scopes: tuple[str, ...],
        what: str,
    ) -> None:
        offset = 0
        for chunk in verified_chunks(stream, desc, chunk_size):
            response = self._send_once(
                "PATCH",
                location,
                scopes=scopes,
                what=what,
                ok=(202,),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(chunk)),
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
                content=chunk,
            )
            location = self._location(response, what)
            offset += len(chunk)
        response = self._send_once(
            "PUT",
            location.copy_merge_params({"digest": desc.digest}),
            scopes=scopes,
            what=what,
            ok=(201,),
            headers={"Content-Length": "0"},
            content=b"",
        )
        self._check_stored(response, desc, what)

    def _check_stored(self, response: httpx.Response, desc: Descriptor, what: str) -> None:
        stored = response.headers.get("docker-content-digest")
        if stored and stored != desc.digest:
            raise DigestError(f"blob {what}: registry stored it as {stored}")

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Link a blob from another repository of this registry without uploading it.

        True if mounted (201); False if the registry declined (202: the session it opened
        instead is cancelled).
        """
        what = f"{repository}@{digest}"
        scopes = (push_scope(repository), pull_scope(from_repository))
        location = self._start_upload(repository, digest, from_repository, scopes, what)
        if location is None:
            return True
        self._send("DELETE", location, scopes=scopes, what=what, ok=(*_OK, 404))
        return False

    # -- listings ---------------------------------------------------------------------

    def list_tags(self, repository: str, page_size: int | None = None) -> list[str]:
        """All tags of a repository, following ``Link`` pagination (``n`` per page)."""
        return self._paginate(
            f"{repository}/tags/list", "tags", pull_scope(repository), repository, page_size
        )

    def catalog(self, page_size: int | None = None) -> list[str]:
        """All repository names (``/v2/_catalog``), following ``Link`` pagination."""
        return self._paginate("_catalog", "repositories", CATALOG_SCOPE, "catalog", page_size)

    def _paginate(
        self, path: str, key: str, scope: str, what: str, page_size: int | None
    ) -> list[str]:
        url: httpx.URL | None = self._url(path)
        params = {"n": str(page_size)} if page_size else None
        seen: set[httpx.URL] = set()
        items: list[str] = []
        while url is not None and url not in seen:
            seen.add(url)
            response = self._send("GET", url, scopes=(scope,), what=what, ok=(200,), params=params)
            page = self._json(response, what).get(key) or []
            if not isinstance(page, list) or not all(isinstance(i, str) for i in page):
                raise RegistryError(f"registry {self.host}: {what}: {key!r} is not a list of names")
            items.extend(page)
            link = response.links.get("next")
            url = response.url.join(link["url"]) if link else None
            params = None  # the next link carries them
        return items
