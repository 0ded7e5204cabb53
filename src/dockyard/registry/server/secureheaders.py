"""Headers every registry response carries, whatever handler (or error) made it.

``X-Content-Type-Options: nosniff``: a browser must take a response as the
``Content-Type`` says, never guess HTML or script from bytes a client pushed.
"""

from __future__ import annotations

SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"),)


def with_security_headers(send):
    """An ASGI ``send`` that adds :data:`SECURITY_HEADERS` to the response start."""

    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *SECURITY_HEADERS]}
        await send(message)

    return wrapped
