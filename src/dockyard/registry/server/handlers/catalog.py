"""``GET /v2/_catalog``: every repository, paged."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from dockyard.registry.server.handlers.common import READ_METHODS, not_allowed, page

if TYPE_CHECKING:
    from dockyard.registry.server.app import RegistryApp


async def handle(app: RegistryApp, request: Request) -> Response:
    if request.method not in READ_METHODS:
        raise not_allowed()
    repositories = await app.run(app.storage.repositories)
    return page(request, "repositories", repositories, {})
