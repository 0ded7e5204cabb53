"""What every handler shares: the API version header, errors as responses, paging."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.registry.server.apierrors import APIError

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
READ_METHODS = frozenset({"GET", "HEAD"})
MAX_PAGE = 10000


def error_response(error: APIError) -> Response:
    """The distribution error JSON for ``error``, with its status and headers."""
    return Response(
        error.body(),
        status_code=error.status,
        media_type="application/json",
        headers={**API_VERSION, **error.headers},
    )


def not_allowed() -> APIError:
    """405: the resource exists, the method does not."""
    return APIError("UNSUPPORTED", status=405)


def client_of(request: Request) -> str:
    """The client's address, as failed logins and uploads in flight are counted."""
    return request.client.host if request.client else ""


def page(request: Request, key: str, items: list[str], extra: dict[str, Any]) -> Response:
    """One page of a sorted listing (``?n=&last=``), with a ``Link`` to the next."""
    n, last = page_params(request)
    if last is not None:
        items = [i for i in items if i > last]
    more = n is not None and len(items) > n
    if n is not None:
        items = items[:n]
    return page_response(request, key, items, more, extra)


def page_response(
    request: Request, key: str, items: list[str], more: bool, extra: dict[str, Any]
) -> Response:
    """``{key: items}``, with a ``Link`` to the page after ``items[-1]`` if ``more``."""
    headers = dict(API_VERSION)
    if more and items:
        query = urlencode({"n": len(items), "last": items[-1]})
        headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
    return JSONResponse({**extra, key: items}, headers=headers)


def page_params(request: Request) -> tuple[int | None, str | None]:
    """``(n, last)`` of a listing request; n is at most :data:`MAX_PAGE`."""
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
