"""How much of a request body a handler may read: every body is bounded before it is read.

The rule: a handler either streams its body to storage (blob uploads) or reads at most the
cap :func:`body_cap` gives its route. The app hands every handler a ``receive`` wrapped
in :class:`BoundedReceive`, so a body over the cap (by its ``Content-Length``, or by the
bytes that actually arrive) ends in ``413 PAYLOAD_TOO_LARGE`` after at most the cap was
buffered, whatever the handler does with it. A refused request (any 4xx/5xx) whose body
was not read to its end closes the connection instead of reading the rest.

- ``POST /token`` (the OAuth2 form): :data:`TOKEN_FORM_MAX`, 64 KiB
- ``PUT /v2/<name>/manifests/<ref>``: :data:`.manifest_checks.MAX_MANIFEST_SIZE`, 4 MiB
  (as distribution)
- ``/v2/<name>/blobs/uploads/...``: no cap here, streamed to storage in batches
- anything else: :data:`OTHER_MAX`, 0 (no other handler reads a body)
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.manifest_checks import MAX_MANIFEST_SIZE

TOKEN_FORM_MAX = 64 << 10
OTHER_MAX = 0

_UPLOAD_RE = re.compile(r"^/v2/.+/blobs/uploads(?:/[^/]*)?$")
_MANIFEST_RE = re.compile(r"^/v2/.+/manifests/[^/]+$")


def body_cap(path: str) -> int | None:
    """The most bytes of body a handler of ``path`` may read; None: it streams them."""
    if _UPLOAD_RE.match(path):
        return None
    if path == "/token":
        return TOKEN_FORM_MAX
    if _MANIFEST_RE.match(path):
        return MAX_MANIFEST_SIZE
    return OTHER_MAX


def too_large(cap: int) -> APIError:
    """413 (the connection is closed after it: the rest of the body is never read)."""
    return APIError("PAYLOAD_TOO_LARGE", f"request body over {cap} bytes")


class BoundedReceive:
    """An ASGI ``receive`` that raises :func:`too_large` once the body passes ``cap``.

    A declared ``Content-Length`` over the cap is refused on the first read, before any
    byte is buffered; a chunked (or lying) body is refused as soon as what arrived passes
    the cap. Only the handler reads through it; the response gets the plain ``receive``
    (Starlette watches it for a disconnect and may see body bytes nobody asked for).
    """

    def __init__(self, receive: Any, scope: dict[str, Any], cap: int | None):
        self._receive = receive
        self._cap = cap
        self._seen = 0
        self._declared, chunked = _body_headers(scope)
        self._ended = self._declared == 0 or (self._declared is None and not chunked)

    @property
    def unread(self) -> bool:
        """Whether body bytes that no handler read are still on their way.

        Refusing the request, close the connection rather than read them (and drop them)
        to keep it alive.
        """
        return not self._ended

    async def __call__(self) -> dict[str, Any]:
        cap = self._cap
        if cap is not None and self._declared is not None and self._declared > cap:
            raise too_large(cap)
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            self._ended = not message.get("more_body", False)
            if cap is not None and self._seen > cap:
                raise too_large(cap)
        return message


def _body_headers(scope: dict[str, Any]) -> tuple[int | None, bool]:
    """The declared ``Content-Length`` (None if absent or bad), and whether it is chunked."""
    length, chunked = None, False
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            with contextlib.suppress(ValueError):
                length = int(value)
        elif key == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return length, chunked
