"""``GET /v2/<name>/tags/list``: a repository's tags, paged.

A mirrored repository's come from its upstream (the cached ones when the upstream
cannot be asked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.handlers.common import READ_METHODS, not_allowed, page
from dockyard.registry.server.mirror import Route

if TYPE_CHECKING:
    from dockyard.registry.server.app import RegistryApp


async def handle(app: RegistryApp, request: Request, name: str, route: Route | None) -> Response:
    if request.method not in READ_METHODS:
        raise not_allowed()
    storage = app.storage
    if route is not None:
        tags = await app.mirror.tags(route)
        if tags is None:
            tags = await app.run(storage.tags, route.local)
            if not tags and not await app.run(storage.repo_exists, route.local):
                raise APIError("NAME_UNKNOWN", detail={"name": name})
        return page(request, "tags", sorted(set(tags)), {"name": name})
    if not await app.run(storage.repo_exists, name):
        raise APIError("NAME_UNKNOWN", detail={"name": name})
    return page(request, "tags", await app.run(storage.tags, name), {"name": name})
