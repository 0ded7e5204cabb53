"""``GET /v2/_catalog``: every repository, paged.

At most :data:`.common.MAX_PAGE` a page: the backend lists only what the page needs,
after ``last``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from dockyard.registry.server.handlers.common import (
    MAX_PAGE,
    READ_METHODS,
    not_allowed,
    page_params,
    page_response,
)

if TYPE_CHECKING:
    from dockyard.registry.server.app import RegistryApp


async def handle(app: RegistryApp, request: Request) -> Response:
    if request.method not in READ_METHODS:
        raise not_allowed()
    n, last = page_params(request)
    limit = MAX_PAGE if n is None else n
    found = await app.run(app.storage.repositories, last, limit + 1) if limit else []
    return page_response(request, "repositories", found[:limit], len(found) > limit, {})
