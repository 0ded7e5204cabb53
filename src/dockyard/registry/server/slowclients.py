"""Bounds on how slowly, and how many uploads at once, a client may send.

A client that trickles its request could otherwise hold a connection (and a handler, a
buffer, an upload file) forever -- slowloris. Three limits, all in the server config:

- ``header_timeout``: the request line and headers must be complete within this many
  seconds of their first byte (or of the connection opening). uvicorn only times out
  idle keep-alive connections, so its HTTP protocols are subclassed
  (:func:`http_protocol`); an incomplete head is answered by closing the connection.
- ``body_timeout`` and ``body_min_rate``: a request body must keep coming. Every
  ``body_timeout`` seconds spent waiting for it must bring at least
  ``body_min_rate * body_timeout`` bytes; a body that stalls, or trickles slower, is cut
  off with 408 (:class:`BodyDeadline`). Time the server itself spends (writing to disk)
  does not count against the client.
- ``max_uploads_per_client``: upload requests in flight per client address; more get
  429 ``TOOMANYREQUESTS`` (:class:`UploadSlots`). Behind a proxy every client has the
  proxy's address: raise the limit there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from dockyard.registry.server.apierrors import APIError

log = logging.getLogger("dockyard.registry.server")

DEFAULT_HEADER_TIMEOUT = 20.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_BODY_MIN_RATE = 1024.0  # bytes per second
DEFAULT_MAX_UPLOADS_PER_CLIENT = 16


class BodyDeadline:
    """An ASGI ``receive`` that cuts off a request body arriving too slowly.

    Only the body is timed: once its last part has arrived, calls pass through (a
    streaming response waits on ``receive`` for the client to go away).
    """

    def __init__(self, receive, window: float, min_rate: float):
        self._receive = receive
        self._window = window
        self._min_bytes = min_rate * window
        self._waited = 0.0
        self._got = 0
        self._done = False

    def _too_slow(self) -> APIError:
        return APIError(
            "REQUEST_TIMEOUT",
            f"request body arrived slower than {self._min_bytes:.0f} bytes in {self._window:g} s",
            headers={"Connection": "close"},
        )

    async def __call__(self) -> dict[str, Any]:
        if self._done:
            return await self._receive()
        start = time.monotonic()
        try:
            message = await asyncio.wait_for(self._receive(), self._window - self._waited)
        except TimeoutError:
            raise self._too_slow() from None
        self._waited += time.monotonic() - start
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._done = True
            return message
        self._got += len(message.get("body", b""))
        if self._waited >= self._window:
            if self._got < self._min_bytes:
                raise self._too_slow()
            self._waited, self._got = 0.0, 0
        return message


class UploadSlots:
    """Upload requests in flight per client address, at most ``limit`` each."""

    def __init__(self, limit: int):
        self.limit = limit
        self._active: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, client: str) -> Iterator[None]:
        """One slot for ``client`` while the block runs; 429 if it has none left."""
        active = self._active.get(client, 0)
        if active >= self.limit:
            raise APIError(
                "TOOMANYREQUESTS",
                f"{active} uploads from {client} in progress; at most {self.limit} at once",
                headers={"Retry-After": "1"},
            )
        self._active[client] = active + 1
        try:
            yield
        finally:
            left = self._active[client] - 1
            if left:
                self._active[client] = left
            else:
                del self._active[client]


class _HeadDeadline:
    """Mixed into a uvicorn HTTP protocol: close a connection whose request head is not
    complete ``header_timeout`` seconds after it began (or after the connection opened).
    """

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    _head_timer: asyncio.TimerHandle | None = None

    def _arm_head_deadline(self) -> None:
        if self._head_timer is None:
            loop = asyncio.get_running_loop()
            self._head_timer = loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        transport = self.transport  # type: ignore[attr-defined]
        if not transport.is_closing():
            log.info(
                "closing connection from %s: request head not complete in %gs",
                self.client,  # type: ignore[attr-defined]
                self.header_timeout,
            )
            transport.close()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_head_deadline()

    def connection_lost(self, exc) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)  # type: ignore[misc]


def http_protocol(header_timeout: float, implementation: str = "auto") -> type:
    """uvicorn's HTTP protocol with a head deadline.

    ``implementation``: ``"httptools"``, ``"h11"``, or ``"auto"`` (httptools when
    installed, as uvicorn chooses).
    """
    if implementation == "auto":
        try:
            import httptools  # noqa: F401
        except ImportError:
            implementation = "h11"
        else:
            implementation = "httptools"
    base: type
    mixin: type
    if implementation == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        base, mixin = H11Protocol, _H11HeadDeadline
    else:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base, mixin = HttpToolsProtocol, _HttpToolsHeadDeadline
    return type(
        f"{base.__name__}WithHeadDeadline", (mixin, base), {"header_timeout": header_timeout}
    )


class _HttpToolsHeadDeadline(_HeadDeadline):
    """httptools calls back when a head begins and when it is complete."""

    def on_message_begin(self) -> None:
        self._arm_head_deadline()
        super().on_message_begin()  # type: ignore[misc]

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()  # type: ignore[misc]


class _H11HeadDeadline(_HeadDeadline):
    """h11 reports no head events: its state says whether a head is still awaited."""

    def data_received(self, data: bytes) -> None:
        import h11

        super().data_received(data)  # type: ignore[misc]
        if self.conn.their_state is h11.IDLE:  # type: ignore[attr-defined]
            self._arm_head_deadline()
        else:
            self._disarm_head_deadline()
