"""The OCI distribution API as an ASGI application (Starlette requests and responses).

One dispatcher matches the path (repository names contain ``/``, so the fixed suffix
decides: ``.../manifests/<ref>``, ``.../blobs/<digest>``, ``.../blobs/uploads/<id>``,
``.../tags/list``, ``.../referrers/<digest>``), validates every part, checks access and
calls the handler. Storage calls run in threads (on S3 each is a request). Uploads
stream to storage in 1 MiB batches, hashed as they arrive, the write of one batch
overlapping the receipt of the next; downloads stream in 1 MiB reads (a file from disk,
or a ``Range`` of an object from the object store). Handlers read bodies only through
:mod:`.limits`' caps, and check passwords only through :mod:`.logins` (bcrypt off the
event loop, failures rate-limited). A blob is served through a repository only if it is
linked there (pushed, mounted from a readable repository, or fetched from its upstream).
What a manifest must be is in :mod:`.manifest_checks`; how slowly and how many uploads
at once a client may send, in :mod:`.slowclients`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus, urlencode

from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from dockyard.errors import DigestError, ManifestError
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Platform
from dockyard.registry.server import auth, limits, manifest_checks, names
from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.backend import RegistryStorage, UploadWriter, open_storage
from dockyard.registry.server.config import ServerConfig
from dockyard.registry.server.logins import Logins
from dockyard.registry.server.manifeststore import StoredManifest, referrer_info
from dockyard.registry.server.mirror import STALE_HEADERS, Mirror, Route
from dockyard.registry.server.secureheaders import with_security_headers
from dockyard.registry.server.slowclients import BodyDeadline, UploadSlots

log = logging.getLogger("dockyard.registry.server")

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
WRITE_BATCH = 1 << 20
READ_CHUNK = 1 << 20
DEFAULT_PAGE = 1000
MAX_PAGE = 10000

_PATH_RE = re.compile(
    r"^/v2/(?P<name>.+)/(?:"
    r"(?P<tags>tags/list)"
    r"|manifests/(?P<reference>[^/]+)"
    r"|blobs/uploads(?:/(?P<upload>[^/]*))?"
    r"|blobs/(?P<digest>[^/]+)"
    r"|referrers/(?P<subject>[^/]+)"
    r")$"
)
_READ_METHODS = frozenset({"GET", "HEAD"})
_RANGE_PART = re.compile(r"^([0-9]*)-([0-9]*)$")

Handler = Callable[..., Awaitable[Response]]


class BlobResponse(FileResponse):
    """A blob from disk, read in big chunks (``Range`` handled by Starlette)."""

    chunk_size = READ_CHUNK


def _error_response(error: APIError) -> Response:
    return Response(
        error.body(),
        status_code=error.status,
        media_type="application/json",
        headers={**API_VERSION, **error.headers},
    )


def _accepts(request: Request) -> list[str]:
    out = []
    for header in request.headers.getlist("accept"):
        for part in header.split(","):
            media = part.split(";", 1)[0].strip()
            if media:
                out.append(media)
    return out


def _client(request: Request) -> str:
    """The client's address, as failed logins are counted."""
    return request.client.host if request.client else ""


def _page_params(request: Request) -> tuple[int | None, str | None]:
    n_text = request.query_params.get("n")
    last = request.query_params.get("last") or None
    if n_text is None or n_text == "":
        return None, last
    try:
        n = int(n_text)
    except ValueError:
        raise APIError("UNSUPPORTED", "n must be a number", status=400) from None
    if n < 0:
        raise APIError("UNSUPPORTED", "n must not be negative", status=400)
    return min(n, MAX_PAGE), last


def _check_chunk_start(request: Request, writer: UploadWriter, name: str, upload: str) -> None:
    """416 for a chunk (``PATCH``, or the final ``PUT``) whose ``Content-Range`` does not
    start where the upload ends: nothing of it is written."""
    content_range = request.headers.get("content-range")
    if not content_range:
        return
    start = content_range.removeprefix("bytes ").split("-", 1)[0].strip()
    if not start.isdigit() or int(start) != writer.offset:
        raise APIError(
            "RANGE_INVALID",
            f"chunk starts at {start}, upload has {writer.offset} bytes",
            headers={
                "Location": f"/v2/{name}/blobs/uploads/{upload}",
                "Range": f"0-{max(writer.offset - 1, 0)}",
            },
        )


def _check_range(header: str | None, size: int) -> None:
    """416 (with the error JSON) for a ``Range`` Starlette would refuse in plain text: not
    ``bytes=``, a part that is not ``first-[last]`` or ``-suffix``, a last byte before the
    first, or nothing of the blob in reach (``bytes=500-0`` is all three)."""
    if header is None or _range_servable(header, size):
        return
    raise APIError(
        "RANGE_INVALID",
        f"range {header!r} cannot be served from a blob of {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )


def _range_servable(header: str, size: int) -> bool:
    units, sep, spec = header.partition("=")
    if not sep or units.strip().lower() != "bytes":
        return False
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) > BlobResponse.max_ranges:
        return True  # Starlette ignores so many: the whole blob
    for part in parts:
        match = _RANGE_PART.match(part)
        if match is None or match[0] == "-":
            return False
        first, last = match.groups()
        if first and (int(first) >= size or (last and int(last) < int(first))):
            return False
        if not first and (int(last) == 0 or size == 0):
            return False
    return True


def _single_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a one-part ``Range`` (already checked servable); None for
    no header or several parts (the whole blob is an allowed answer to those)."""
    if header is None:
        return None
    parts = header.partition("=")[2].split(",")
    if len(parts) != 1:
        return None
    first, _, last = parts[0].strip().partition("-")
    if not first:
        return max(size - int(last), 0), size - 1
    return int(first), min(int(last), size - 1) if last else size - 1


def _streamed_blob(
    storage: RegistryStorage, digest: str, size: int, range_header: str | None, headers: dict
) -> Response:
    """A blob streamed from a backend without local files (the object store), one
    ``Range`` part honoured (206), read in big chunks in a thread as the client takes them."""
    headers = {**headers, "Accept-Ranges": "bytes"}
    wanted = _single_range(range_header, size)
    if wanted is None:
        headers["Content-Length"] = str(size)
        body = storage.read_blob(digest)
        return StreamingResponse(body, headers=headers, media_type="application/octet-stream")
    first, last = wanted
    headers["Content-Length"] = str(last - first + 1)
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    body = storage.read_blob(digest, first, last - first + 1)
    return StreamingResponse(
        body, status_code=206, headers=headers, media_type="application/octet-stream"
    )


def _paginate(items: list[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    if last is not None:
        items = [i for i in items if i > last]
    if n is None:
        return items, False
    return items[:n], len(items) > n


class RegistryApp:
    """The ASGI application; ``config.root`` is created if missing."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.storage = open_storage(config)
        self.storage.ensure()
        self.mirror = Mirror(self.storage, config)
        self.htpasswd = auth.Htpasswd(config.htpasswd) if config.htpasswd else None
        self.logins = Logins(self.htpasswd, config.auth_failure_limit) if self.htpasswd else None
        self.tokens = (
            auth.TokenIssuer(config.root / "auth" / "token.key")
            if self.htpasswd and config.auth_mode == "token"
            else None
        )
        self._io = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix="registry-io")
        self._upload_locks: dict[str, asyncio.Lock] = {}
        self.upload_slots = UploadSlots(config.max_uploads_per_client)

    # -- ASGI --------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        config = self.config
        send = with_security_headers(send)
        receive = BodyDeadline(receive, config.body_timeout, config.body_min_rate)
        bounded = limits.BoundedReceive(receive, scope, limits.body_cap(scope["path"]))
        request = Request(scope, bounded)
        try:
            response = await self.handle(request)
        except APIError as e:
            response = _error_response(e)
        except ClientDisconnect:
            return
        except Exception as e:
            log.exception("%s %s failed", request.method, scope.get("path"))
            response = _error_response(APIError("UNKNOWN", f"internal error: {e}"))
        if response.status_code >= 400 and bounded.unread:
            response.headers["Connection"] = "close"
        await response(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._run(self.mirror.warm_up)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        self.mirror.close()
        self.storage.close()
        if self.logins is not None:
            self.logins.close()
        self._io.shutdown(wait=False)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    # -- dispatch ----------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        path: str = request.scope["path"]
        method = request.method
        if path == "/token" and self.tokens is not None:
            return await self.token(request)
        if path in ("/v2", "/v2/"):
            await self._authorize(request, None, None)
            return JSONResponse({}, headers=API_VERSION)
        if path == "/v2/_catalog":
            if method not in _READ_METHODS:
                raise APIError("UNSUPPORTED", status=405)
            await self._authorize(request, "registry:catalog", "*")
            return await self.catalog(request)
        match = _PATH_RE.match(path)
        if match is None:
            if path.startswith("/v2/"):
                raise APIError("NAME_INVALID", detail={"path": path}, status=404)
            return Response(status_code=404, headers=API_VERSION)
        name = match["name"]
        if not names.valid_name(name):
            raise APIError("NAME_INVALID", detail={"name": name})
        ns = request.query_params.get("ns")
        plain = self.mirror.route(name)  # the route the path itself names
        route = self.mirror.route(name, ns) if ns else plain
        if route is None and self.mirror.is_mirrored(name):
            route = plain
            if route is None:
                raise APIError("NAME_INVALID", detail={"name": name})
        action = "pull" if method in _READ_METHODS else ("delete" if method == "DELETE" else "push")
        if route is not None and route != plain:
            # ?ns= reads another repository than the path names: the scope is for that one
            await self._authorize(request, f"repository:{route.local}", action)
        else:
            await self._authorize(request, f"repository:{name}", action)
        if method not in _READ_METHODS:
            if self.config.read_only:
                raise APIError("UNSUPPORTED", "the registry is read-only", status=405)
            if route is not None:
                raise APIError(
                    "UNSUPPORTED",
                    f"{name} mirrors {route.upstream.config.url}: it is read-only",
                    status=405,
                )

        if match["tags"]:
            if method not in _READ_METHODS:
                raise APIError("UNSUPPORTED", status=405)
            return await self.tags_list(request, name, route)
        if (reference := match["reference"]) is not None:
            return await self._manifest_dispatch(request, method, name, reference, route)
        if match["upload"] is not None or path.endswith("/blobs/uploads"):
            upload = match["upload"] or ""
            with self.upload_slots.hold(_client(request)):
                return await self._upload_dispatch(request, method, name, upload)
        if (digest := match["digest"]) is not None:
            if method in _READ_METHODS:
                return await self.get_blob(request, name, digest, route)
            if method == "DELETE":
                return await self.delete_blob(name, digest)
            raise APIError("UNSUPPORTED", status=405)
        if (subject := match["subject"]) is not None:
            if method != "GET":
                raise APIError("UNSUPPORTED", status=405)
            return await self.referrers(request, route.local if route else name, subject)
        raise APIError("UNSUPPORTED", status=405)

    async def _manifest_dispatch(
        self, request: Request, method: str, name: str, reference: str, route: Route | None
    ) -> Response:
        if names.is_digest_like(reference):
            if not names.valid_digest(reference):
                raise APIError("DIGEST_INVALID", detail={"digest": reference})
        elif not names.valid_tag(reference):
            # the spec's codes: no such manifest can exist (404), and one cannot be put
            # there (400 MANIFEST_INVALID); TAG_INVALID is a Docker schema1 code
            if method == "PUT":
                raise APIError(
                    "MANIFEST_INVALID",
                    f"{reference!r} is not a valid tag",
                    detail={"tag": reference},
                )
            raise APIError("MANIFEST_UNKNOWN", detail={"tag": reference})
        if method in _READ_METHODS:
            return await self.get_manifest(request, name, reference, route)
        if method == "PUT":
            return await self.put_manifest(request, name, reference)
        if method == "DELETE":
            return await self.delete_manifest(name, reference)
        raise APIError("UNSUPPORTED", status=405)

    async def _upload_dispatch(
        self, request: Request, method: str, name: str, upload: str
    ) -> Response:
        if upload == "":
            if method == "POST":
                return await self.start_upload(request, name)
            raise APIError("UNSUPPORTED", status=405)
        owner = await self._run(self.storage.uploads.repository, upload)
        if owner != name:
            raise APIError("BLOB_UPLOAD_UNKNOWN", detail={"upload": upload})
        lock = self._upload_locks.setdefault(upload, asyncio.Lock())
        async with lock:
            if await self._run(self.storage.uploads.repository, upload) != name:  # finished
                raise APIError("BLOB_UPLOAD_UNKNOWN", detail={"upload": upload})
            if method == "PATCH":
                return await self.patch_upload(request, name, upload)
            if method == "PUT":
                return await self.finish_upload(request, name, upload)
            if method == "GET":
                size = await self._run(self.storage.uploads.size, upload)
                return self._upload_status(name, upload, 204, size)
            if method == "DELETE":
                await self._run(self.storage.uploads.cancel, upload)
                self._upload_locks.pop(upload, None)
                return Response(status_code=204, headers=API_VERSION)
        raise APIError("UNSUPPORTED", status=405)

    # -- auth --------------------------------------------------------------------------

    async def _authorize(self, request: Request, resource: str | None, action: str | None) -> None:
        """Raise 401 unless the request may do ``action`` on ``resource`` (None: any user);
        429 for a client or user that failed to log in too often."""
        if self.logins is None or self.htpasswd is None:
            return
        header = request.headers.get("authorization")
        config = self.config
        if self.tokens is None:  # basic
            user = auth.parse_basic(header)
            if user is not None and await self.logins.check(_client(request), *user):
                return
            if config.anonymous_pull and user is None and action in ("pull", None):
                return
            raise APIError(
                "UNAUTHORIZED",
                headers={"WWW-Authenticate": 'Basic realm="dockyard-registry"'},
            )
        granted: list[auth.Access] | None = None
        if header and header[:7].lower() == "bearer ":
            checked = self.tokens.verify_user(header[7:].strip())
            if checked is not None and (not checked[0] or self.htpasswd.knows(checked[0])):
                granted = checked[1]  # a removed user's tokens end with the user
        if granted is not None:
            if resource is None:
                return
            kind, _, rname = resource.partition(":")
            if auth.allows(granted, kind, rname, action or "*"):
                return
            if action == "delete" and auth.allows(granted, kind, rname, "push"):
                return
        elif resource is not None and config.anonymous_pull and action == "pull" and not header:
            return
        realm = (
            config.token_realm or f"{request.url.scheme}://{request.headers.get('host', '')}/token"
        )
        challenge = f'Bearer realm="{realm}",service="{auth.SERVICE}"'
        if resource is not None:
            actions = {"pull": "pull", "push": "pull,push", "delete": "delete"}.get(
                action or "", action or "*"
            )
            challenge += f',scope="{resource}:{actions}"'
            if granted is not None:
                challenge += ',error="insufficient_scope"'
        raise APIError("UNAUTHORIZED", headers={"WWW-Authenticate": challenge})

    async def token(self, request: Request) -> Response:
        """Our token realm: ``GET`` with basic credentials, or the OAuth2 ``POST``."""
        assert self.tokens is not None and self.logins is not None
        user: str | None = None
        scopes: list[str] = []
        if request.method == "POST":
            form = dict(
                p.split("=", 1) if "=" in p else (p, "")
                for p in (await request.body()).decode(errors="replace").split("&")
                if p
            )
            form = {unquote_plus(k): unquote_plus(v) for k, v in form.items()}
            if form.get("grant_type") != "password":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            creds = (form.get("username", ""), form.get("password", ""))
            if not await self.logins.check(_client(request), *creds):
                return JSONResponse({"error": "invalid_grant"}, status_code=401)
            user = creds[0]
            scopes = form.get("scope", "").split()
        else:
            creds = auth.parse_basic(request.headers.get("authorization"))
            if creds is not None:
                if not await self.logins.check(_client(request), *creds):
                    raise APIError(
                        "UNAUTHORIZED",
                        "bad user name or password",
                        headers={"WWW-Authenticate": 'Basic realm="dockyard-registry"'},
                    )
                user = creds[0]
            elif not self.config.anonymous_pull:
                raise APIError(
                    "UNAUTHORIZED",
                    headers={"WWW-Authenticate": 'Basic realm="dockyard-registry"'},
                )
            scopes = request.query_params.getlist("scope")
        requested = [a for s in scopes for a in auth.parse_scope(s)]
        granted = auth.grant(requested, user, self.config.anonymous_pull)
        token, ttl = self.tokens.issue(user or "", granted)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return JSONResponse(
            {"token": token, "access_token": token, "expires_in": ttl, "issued_at": issued}
        )

    # -- manifests ---------------------------------------------------------------------

    async def _load_manifest(
        self, name: str, reference: str, route: Route | None
    ) -> tuple[StoredManifest, bool]:
        if route is not None:
            return await self.mirror.manifest(route, reference)
        found = await self._run(self.storage.get_manifest, name, reference)
        if found is None:
            if not await self._run(self.storage.repo_exists, name):
                raise APIError("NAME_UNKNOWN", detail={"name": name})
            raise APIError("MANIFEST_UNKNOWN", detail={"reference": reference})
        return found, False

    async def get_manifest(
        self, request: Request, name: str, reference: str, route: Route | None
    ) -> Response:
        found, stale = await self._load_manifest(name, reference, route)
        accepted = _accepts(request)
        if accepted and "*/*" not in accepted and found.media_type not in accepted:
            found = await self._negotiate(found, accepted, name, route)
        headers = {
            **API_VERSION,
            "Docker-Content-Digest": found.digest,
            "ETag": f'"{found.digest}"',
        }
        if stale:
            headers.update(STALE_HEADERS)
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(found.data))
            headers["Content-Type"] = found.media_type
            return Response(status_code=200, headers=headers)
        return Response(found.data, media_type=found.media_type, headers=headers)

    async def _negotiate(
        self, found: StoredManifest, accepted: list[str], name: str, route: Route | None
    ) -> StoredManifest:
        """An index the client does not accept: its entry for the host's platform."""
        if found.media_type not in mt.INDEXES:
            return found  # nothing better to offer; the client decides
        try:
            index = manifests.parse(found.data, found.media_type)
        except ManifestError:
            return found
        assert isinstance(index, manifests.Index)
        wanted = Platform.host()
        for entry in index.manifests:
            if entry.platform and wanted.matches(entry.platform) and entry.media_type in accepted:
                child, _ = await self._load_manifest(name, entry.digest, route)
                return child
        raise APIError(
            "MANIFEST_UNKNOWN",
            f"manifest is a {found.media_type}, which the client does not accept",
            detail={"accepted": accepted},
        )

    async def put_manifest(self, request: Request, name: str, reference: str) -> Response:
        raw = await request.body()  # capped by limits.BoundedReceive
        try:
            checked = manifest_checks.check(raw, manifest_checks.content_type_of(request))
        except ManifestError as e:
            raise APIError("MANIFEST_INVALID", str(e)) from None
        doc, parsed, media_type = checked.doc, checked.parsed, checked.media_type
        if names.is_digest_like(reference):
            h = hashlib.new(reference.split(":", 1)[0])
            h.update(raw)
            actual = f"{h.name}:{h.hexdigest()}"
            if actual != reference:
                raise APIError("DIGEST_INVALID", detail={"expected": reference, "actual": actual})
        extras = referrer_info(raw)
        if isinstance(doc.get("subject"), dict) and not extras:
            raise APIError("MANIFEST_INVALID", "bad subject descriptor")
        subject = extras.get("subject")
        by_digest = names.is_digest_like(reference)
        tags = () if by_digest else (reference,)

        def store() -> str:
            with self.storage.gc_lock(shared=True):
                self._check_references(name, parsed)
                return self.storage.put_manifest(
                    name, raw, media_type, tags, digest=reference if by_digest else None, **extras
                )

        digest = await self._run(store)
        headers = {
            **API_VERSION,
            "Location": f"/v2/{name}/manifests/{digest}",
            "Docker-Content-Digest": digest,
        }
        if subject is not None:
            headers["OCI-Subject"] = subject.digest
        return Response(status_code=201, headers=headers)

    def _check_references(self, name: str, parsed: manifests.Manifest | manifests.Index) -> None:
        """Every blob (or child manifest) a manifest names must be in this repository
        (pushed to it, or mounted into it): naming a digest of another repository's
        content never makes it readable here."""
        storage = self.storage
        if isinstance(parsed, manifests.Index):
            for entry in parsed.manifests:
                if not storage.has_manifest(name, entry.digest):
                    raise APIError("MANIFEST_BLOB_UNKNOWN", detail={"digest": entry.digest})
                manifest_checks.check_blob_size(storage, entry)
            return
        for desc in parsed.blobs:
            if desc.urls and "nondistributable" in desc.media_type + "foreign":
                continue
            if storage.has_blob(name, desc.digest):
                manifest_checks.check_blob_size(storage, desc)
                storage.touch_blob(desc.digest)  # gc grace
            elif not desc.urls and not storage.has_manifest(name, desc.digest):
                raise APIError("MANIFEST_BLOB_UNKNOWN", detail={"digest": desc.digest})

    async def delete_manifest(self, name: str, reference: str) -> Response:
        if names.is_digest_like(reference):
            done = await self._run(self.storage.delete_manifest, name, reference)
        else:
            done = await self._run(self.storage.delete_tag, name, reference)
        if not done:
            raise APIError("MANIFEST_UNKNOWN", detail={"reference": reference})
        return Response(status_code=202, headers=API_VERSION)

    # -- blobs -------------------------------------------------------------------------

    async def get_blob(
        self, request: Request, name: str, digest: str, route: Route | None
    ) -> Response:
        if not names.valid_digest(digest):
            raise APIError("DIGEST_INVALID", detail={"digest": digest})
        storage = self.storage
        headers = {**API_VERSION, "Docker-Content-Digest": digest}
        if route is not None:
            local = route.local
            size = await self._run(self._linked_size, local, digest)
            if (
                size is None
                and route.upstream.config.trusted
                and await self._run(storage.blob_size, digest) is not None
            ):
                # stored for another repository: serve it here only if the upstream has it
                # for this one (an upstream a client named must send the bytes instead)
                if await self.mirror.blob_size(route, digest) is None:
                    raise APIError("BLOB_UNKNOWN", detail={"digest": digest})
                await self._run(storage.link_blob, local, digest)
                size = await self._run(storage.blob_size, digest)
            if size is None:
                if request.method == "HEAD":
                    size = await self.mirror.blob_size(route, digest)
                    if size is None:
                        raise APIError("BLOB_UNKNOWN", detail={"digest": digest})
                    headers["Content-Length"] = str(size)
                    return Response(
                        status_code=200, headers=headers, media_type="application/octet-stream"
                    )
                opened = await self.mirror.stream_blob(route, digest)
                if opened is None:
                    raise APIError("BLOB_UNKNOWN", detail={"digest": digest})
                body, size = opened
                headers["Content-Length"] = str(size)
                return StreamingResponse(
                    body, headers=headers, media_type="application/octet-stream"
                )
        else:
            size = await self._run(self._linked_size, name, digest)
            if size is None:
                raise APIError("BLOB_UNKNOWN", detail={"digest": digest})
        if request.method == "HEAD":
            await self._run(storage.touch_blob, digest)  # a client about to reference it
            headers["Content-Length"] = str(size)
            headers["Accept-Ranges"] = "bytes"
            return Response(status_code=200, headers=headers, media_type="application/octet-stream")
        range_header = request.headers.get("range")
        _check_range(range_header, size)
        path = storage.blob_file(digest)
        if path is not None:
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                raise APIError("BLOB_UNKNOWN", detail={"digest": digest}) from None
            return BlobResponse(
                path, headers=headers, media_type="application/octet-stream", stat_result=stat
            )
        return _streamed_blob(storage, digest, size, range_header, headers)

    def _linked_size(self, name: str, digest: str) -> int | None:
        """The size of a blob the repository holds; None if it holds none."""
        if not self.storage.has_blob(name, digest):
            return None
        return self.storage.blob_size(digest)

    async def delete_blob(self, name: str, digest: str) -> Response:
        if not names.valid_digest(digest):
            raise APIError("DIGEST_INVALID", detail={"digest": digest})
        if not await self._run(self.storage.unlink_blob, name, digest):
            raise APIError("BLOB_UNKNOWN", detail={"digest": digest})
        return Response(status_code=202, headers=API_VERSION)

    # -- uploads -----------------------------------------------------------------------

    def _upload_status(
        self, name: str, upload: str, status: int, size: int | None = None
    ) -> Response:
        size = self.storage.uploads.size(upload) if size is None else size
        return Response(
            status_code=status,
            headers={
                **API_VERSION,
                "Location": f"/v2/{name}/blobs/uploads/{upload}",
                "Range": f"0-{max(size - 1, 0)}",
                "Docker-Upload-UUID": upload,
                "Content-Length": "0",
            },
        )

    def _blob_created(self, name: str, digest: str) -> Response:
        return Response(
            status_code=201,
            headers={
                **API_VERSION,
                "Location": f"/v2/{name}/blobs/{digest}",
                "Docker-Content-Digest": digest,
                "Content-Length": "0",
            },
        )

    async def start_upload(self, request: Request, name: str) -> Response:
        storage = self.storage
        query = request.query_params
        mount, source = query.get("mount"), query.get("from")
        if mount and source and names.valid_digest(mount) and names.valid_name(source):
            # only from a repository that has the blob and the client may read; without
            # from=, no mount (the spec's 202): a digest alone proves nothing
            route = self.mirror.route(source)
            allowed = await self._run(storage.has_blob, route.local if route else source, mount)
            if allowed and self.htpasswd is not None:
                try:
                    await self._authorize(request, f"repository:{source}", "pull")
                except APIError:
                    allowed = False
            if allowed:
                await self._run(storage.link_blob, name, mount)
                return self._blob_created(name, mount)
        digest = query.get("digest")
        if digest is not None and not names.valid_digest(digest):
            raise APIError("DIGEST_INVALID", detail={"digest": digest})
        upload = await self._run(storage.uploads.start, name)
        if digest is None:
            return self._upload_status(name, upload, 202, 0)
        writer = await self._run(storage.uploads.open, upload)  # monolithic: all in one
        try:
            await self._receive(request, writer)
            await self._finish(writer, name, digest)
        except BaseException:
            await self._run(writer.abort)
            raise
        return self._blob_created(name, digest)

    async def patch_upload(self, request: Request, name: str, upload: str) -> Response:
        storage = self.storage
        writer = await self._run(storage.uploads.open, upload)
        try:
            _check_chunk_start(request, writer, name, upload)
            try:
                await self._receive(request, writer)
            except ClientDisconnect:
                log.info("upload %s: client went away after %d bytes", upload, writer.offset)
                raise
        finally:
            await self._run(writer.close)
        return self._upload_status(name, upload, 202, writer.offset)

    async def finish_upload(self, request: Request, name: str, upload: str) -> Response:
        digest = request.query_params.get("digest")
        if not digest or not names.valid_digest(digest):
            raise APIError("DIGEST_INVALID", detail={"digest": digest})
        writer = await self._run(self.storage.uploads.open, upload)
        try:
            _check_chunk_start(request, writer, name, upload)  # the last chunk, in order
            await self._receive(request, writer)
        except BaseException:
            await self._run(writer.close)
            raise
        await self._finish(writer, name, digest)
        self._upload_locks.pop(upload, None)
        return self._blob_created(name, digest)

    async def _finish(self, writer: UploadWriter, name: str, digest: str) -> None:
        def finish() -> None:
            writer.finish(digest, self.storage)
            self.storage.link_blob(name, digest)

        try:
            await self._run(finish)
        except DigestError as e:
            raise APIError("DIGEST_INVALID", str(e), detail={"digest": digest}) from None

    async def _receive(self, request: Request, writer: UploadWriter) -> None:
        """Stream the request body into the upload: 1 MiB batches written in a thread while
        the next batch arrives."""
        loop = asyncio.get_running_loop()
        pending: asyncio.Future | None = None
        buffer = bytearray()
        try:
            async for chunk in request.stream():
                buffer += chunk
                if len(buffer) >= WRITE_BATCH:
                    if pending is not None:
                        await pending
                    data, buffer = buffer, bytearray()
                    pending = loop.run_in_executor(self._io, writer.write, data)
        finally:
            if pending is not None:
                await pending
        if buffer:
            await loop.run_in_executor(self._io, writer.write, buffer)

    # -- listings ----------------------------------------------------------------------

    def _page(
        self, request: Request, key: str, items: list[str], extra: dict[str, Any]
    ) -> Response:
        n, last = _page_params(request)
        page, more = _paginate(items, n, last)
        headers = dict(API_VERSION)
        if more and page:
            query = urlencode({"n": n, "last": page[-1]})
            headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
        return JSONResponse({**extra, key: page}, headers=headers)

    async def catalog(self, request: Request) -> Response:
        repositories = await self._run(self.storage.repositories)
        return self._page(request, "repositories", repositories, {})

    async def tags_list(self, request: Request, name: str, route: Route | None) -> Response:
        storage = self.storage
        if route is not None:
            tags = await self.mirror.tags(route)
            if tags is None:
                tags = await self._run(storage.tags, route.local)
                if not tags and not await self._run(storage.repo_exists, route.local):
                    raise APIError("NAME_UNKNOWN", detail={"name": name})
            return self._page(request, "tags", sorted(set(tags)), {"name": name})
        if not await self._run(storage.repo_exists, name):
            raise APIError("NAME_UNKNOWN", detail={"name": name})
        return self._page(request, "tags", await self._run(storage.tags, name), {"name": name})

    async def referrers(self, request: Request, name: str, subject: str) -> Response:
        if not names.valid_digest(subject):
            raise APIError("DIGEST_INVALID", detail={"digest": subject})
        found = await self._run(self.storage.referrers, name, subject)
        headers = dict(API_VERSION)
        wanted = request.query_params.get("artifactType")
        if wanted:
            found = [d for d in found if d.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": found}
        return Response(json.dumps(body).encode(), media_type=mt.OCI_INDEX, headers=headers)


def create_app(config: ServerConfig) -> RegistryApp:
    """The ASGI application for ``config`` (run it with uvicorn, or call it in tests)."""
    return RegistryApp(config)
