"""The OCI distribution API as an ASGI application (Starlette requests and responses).

This module is the request lifecycle: every body is bounded in size and time before a
handler sees it (:mod:`.limits`, :mod:`.slowclients`), the path is matched and every
part validated (repository names contain ``/``, so the fixed suffix decides:
``.../manifests/<ref>``, ``.../blobs/<digest>``, ``.../blobs/uploads/<id>``,
``.../tags/list``, ``.../referrers/<digest>``), the pull-through route is computed once,
the caller authorised for the repository that is really read (:func:`.handlers.token.authorize`),
writes to a read-only registry or a mirror refused; then one handler module per resource
(:mod:`.handlers`) answers. Errors become the distribution error JSON; a refused request
whose body was not read closes its connection. Storage calls run in this app's threads
(on S3 each is a request).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from dockyard.registry.server import auth, limits, names
from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.backend import open_storage
from dockyard.registry.server.config import ServerConfig
from dockyard.registry.server.handlers import (
    blobs,
    catalog,
    manifests,
    referrers,
    tags,
    token,
    uploads,
)
from dockyard.registry.server.handlers.common import (
    API_VERSION,
    READ_METHODS,
    client_of,
    error_response,
    not_allowed,
)
from dockyard.registry.server.logins import Logins
from dockyard.registry.server.mirror import Mirror, Route
from dockyard.registry.server.secureheaders import with_security_headers
from dockyard.registry.server.slowclients import BodyDeadline, UploadSlots

log = logging.getLogger("dockyard.registry.server")

_PATH_RE = re.compile(
    r"^/v2/(?P<name>.+)/(?:"
    r"(?P<tags>tags/list)"
    r"|manifests/(?P<reference>[^/]+)"
    r"|blobs/uploads(?:/(?P<upload>[^/]*))?"
    r"|blobs/(?P<digest>[^/]+)"
    r"|referrers/(?P<subject>[^/]+)"
    r")$"
)


class RegistryApp:
    """The ASGI application; ``config.root`` is created if missing."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.storage = open_storage(config)
        self.storage.ensure()
        self.mirror = Mirror(self.storage, config)
        self.htpasswd = auth.Htpasswd(config.htpasswd) if config.htpasswd else None
        self.logins = Logins(self.htpasswd, config.auth_failure_limit) if self.htpasswd else None
        self.tokens = None
        if self.htpasswd and config.auth_mode == "token":
            self.tokens = (
                auth.TokenIssuer(config.token_key, create=False)
                if config.token_key
                else auth.TokenIssuer(config.root / "auth" / "token.key")
            )
        self._io = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix="registry-io")
        self.upload_locks: dict[str, asyncio.Lock] = {}  # one request per session at a time
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
            response = error_response(e)
        except ClientDisconnect:
            return
        except Exception as e:
            log.exception("%s %s failed", request.method, scope.get("path"))
            response = error_response(APIError("UNKNOWN", f"internal error: {e}"))
        if response.status_code >= 400 and bounded.unread:
            response.headers["Connection"] = "close"
        await response(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.run(self.mirror.warm_up)
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

    def run_later(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Start ``fn(*args)`` in the app's threads (storage calls may block)."""
        return asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the app's threads, awaited."""
        return await self.run_later(fn, *args)

    # -- routing -----------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        path: str = request.scope["path"]
        if path == "/token" and self.tokens is not None:
            return await token.issue(self, request)
        if path in ("/v2", "/v2/"):
            await token.authorize(self, request, None, None)
            return JSONResponse({}, headers=API_VERSION)
        if path == "/v2/_catalog":
            if request.method not in READ_METHODS:
                raise not_allowed()
            await token.authorize(self, request, "registry:catalog", "*")
            return await catalog.handle(self, request)
        match = _PATH_RE.match(path)
        if match is None:
            if path.startswith("/v2/"):
                raise APIError("NAME_INVALID", detail={"path": path}, status=404)
            return Response(status_code=404, headers=API_VERSION)
        name = match["name"]
        if not names.valid_name(name):
            raise APIError("NAME_INVALID", detail={"name": name})
        route = await self._admit(request, name)

        if match["tags"]:
            return await tags.handle(self, request, name, route)
        if (reference := match["reference"]) is not None:
            return await manifests.handle(self, request, name, reference, route)
        if match["upload"] is not None or path.endswith("/blobs/uploads"):
            with self.upload_slots.hold(client_of(request)):
                return await uploads.handle(self, request, name, match["upload"] or "")
        if (digest := match["digest"]) is not None:
            return await blobs.handle(self, request, name, digest, route)
        if (subject := match["subject"]) is not None:
            return await referrers.handle(self, request, route.local if route else name, subject)
        raise not_allowed()

    async def _admit(self, request: Request, name: str) -> Route | None:
        """The pull-through route of repository ``name`` (None: an ordinary one), once
        the caller is authorised for the repository it really reads; writes to a
        read-only registry or to a mirror refused (405)."""
        method = request.method
        ns = request.query_params.get("ns")
        plain = self.mirror.route(name)  # the route the path itself names
        route = self.mirror.route(name, ns) if ns else plain
        if route is None and self.mirror.is_mirrored(name):
            route = plain
            if route is None:
                raise APIError("NAME_INVALID", detail={"name": name})
        action = "pull" if method in READ_METHODS else ("delete" if method == "DELETE" else "push")
        if route is not None and route != plain:
            # ?ns= reads another repository than the path names: the scope is for that one
            await token.authorize(self, request, f"repository:{route.local}", action)
        else:
            await token.authorize(self, request, f"repository:{name}", action)
        if method not in READ_METHODS:
            if self.config.read_only:
                raise APIError("UNSUPPORTED", "the registry is read-only", status=405)
            if route is not None:
                raise APIError(
                    "UNSUPPORTED",
                    f"{name} mirrors {route.upstream.config.url}: it is read-only",
                    status=405,
                )
        return route


def create_app(config: ServerConfig) -> RegistryApp:
    """The ASGI application for ``config`` (run it with uvicorn, or call it in tests)."""
    return RegistryApp(config)
