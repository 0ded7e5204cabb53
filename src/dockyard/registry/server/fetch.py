"""A lean HTTP/1.1 GET for blob bodies from an upstream, on the server's event loop.

The general client (httpx) costs a Python-level parse and two copies per 64 KiB read;
for a tee that has to keep up with a direct pull, the kernel writes straight into our
1 MiB buffers here (``asyncio.BufferedProtocol``), and each full buffer goes as it is
to the client and to the cache file. Only the plain case is handled: ``200`` with a
``Content-Length`` (following redirects, e.g. to a CDN); anything else raises
:class:`Fallback` before a byte is delivered, and the caller uses the general client.
Authorization comes from the general client's authenticator, which the ``HEAD`` made
just before has primed (token flow included).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urljoin, urlsplit

from dockyard.registry.server import egress

MAX_HEAD = 64 << 10
MAX_REDIRECTS = 5
QUEUE_HIGH = 8  # buffered batches before reading from upstream pauses


class Fallback(Exception):
    """This answer is not the plain case: use the general client."""


class _BodyProtocol(asyncio.BufferedProtocol):
    def __init__(self, batch: int):
        self.batch = batch
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.remaining = -1  # body bytes still to come; -1 until the head is parsed
        self.buf = bytearray()
        self.pos = 0
        self.batches: collections.deque[bytearray] = collections.deque()
        self.wakeup = asyncio.Event()
        self.done = False
        self.error: BaseException | None = None
        self.paused = False
        self._scratch = bytearray(MAX_HEAD)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int):
        if self.remaining <= 0:
            return self._scratch
        return memoryview(self.buf)[self.pos :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.remaining < 0:
            self.head += self._scratch[:nbytes]
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > MAX_HEAD:
                    self._fail(Fallback("answer head too long"))
                return
            self._parse_head(bytes(self.head[:end]))
            body = self.head[end + 4 :]
            self.head = bytearray()
            if not self.head_done.done():
                self.head_done.set_result(None)
            if self.remaining > 0 and body:
                self._take(body)
            return
        if self.remaining == 0:
            return  # more than Content-Length: ignored (Connection: close)
        self.pos += nbytes
        self.remaining -= nbytes
        self._flush_if_full()

    def _take(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view and self.remaining > 0:
            room = len(self.buf) - self.pos
            n = min(room, len(view), self.remaining)
            self.buf[self.pos : self.pos + n] = view[:n]
            self.pos += n
            self.remaining -= n
            view = view[n:]
            self._flush_if_full()

    def _flush_if_full(self) -> None:
        if self.pos == len(self.buf):
            self.batches.append(self.buf)
            self.buf = bytearray(min(self.batch, self.remaining))
            self.pos = 0
            if self.remaining == 0:
                self.done = True
            self.wakeup.set()
            if len(self.batches) >= QUEUE_HIGH and not self.paused and self.transport:
                self.paused = True
                self.transport.pause_reading()

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            self.status = int(parts[1])
        except (IndexError, ValueError):
            self._fail(Fallback(f"bad status line {lines[0]!r}"))
            return
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        length = self.headers.get("content-length", "")
        if self.status != 200 or "transfer-encoding" in self.headers or not length.isdigit():
            self.remaining = 0
            return
        self.remaining = int(length)
        self.buf = bytearray(min(self.batch, self.remaining))
        if self.remaining == 0:
            self.done = True

    def _fail(self, error: BaseException) -> None:
        self.error = error
        if not self.head_done.done():
            self.head_done.set_exception(error)
        self.wakeup.set()
        if self.transport:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done and self.error is None:
            self.error = exc or ConnectionError("upstream closed the connection early")
        if not self.head_done.done():
            self.head_done.set_exception(self.error or ConnectionError("no answer"))
        self.wakeup.set()

    def resume(self) -> None:
        if self.paused and len(self.batches) < QUEUE_HIGH // 2 and self.transport:
            self.paused = False
            self.transport.resume_reading()


def _ssl_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class BlobBody:
    """An open upstream answer: ``size`` bytes to read with :meth:`batches`."""

    def __init__(self, protocol: _BodyProtocol, size: int):
        self._protocol = protocol
        self.size = size

    async def batches(self) -> AsyncIterator[bytearray]:
        """The body in buffers of up to ``batch`` bytes (each a fresh bytearray)."""
        p = self._protocol
        try:
            while True:
                while p.batches:
                    yield p.batches.popleft()
                    p.resume()
                if p.done:
                    return
                if p.error is not None:
                    raise ConnectionError(f"upstream: {p.error}")
                p.wakeup.clear()
                if not p.batches and not p.done and p.error is None:
                    await p.wakeup.wait()
        finally:
            self.close()

    def close(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()


async def open_blob(
    url: str,
    authorization: str | None,
    *,
    verify: bool,
    batch: int = 1 << 20,
    guarded: bool = False,
) -> BlobBody:
    """GET ``url``; raise :class:`Fallback` unless it is a plain 200 with a length.

    ``guarded``: connect (at every redirect) only to addresses :mod:`.egress` checked
    public; :class:`.egress.NotPublic` for a host with any other."""
    loop = asyncio.get_running_loop()
    origin = urlsplit(url).netloc
    for _ in range(MAX_REDIRECTS):
        parts = urlsplit(url)
        https = parts.scheme == "https"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Fallback(f"cannot fetch {url!r}")
        port = parts.port or (443 if https else 80)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = [
            f"GET {path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "User-Agent: dockyard-registry",
            "Accept-Encoding: identity",
            "Connection: close",
        ]
        if authorization and parts.netloc == origin:
            headers.append(f"Authorization: {authorization}")
        address = parts.hostname
        if guarded:
            try:
                address = (await egress.public_addresses_async(parts.hostname, port))[0]
            except egress.NotPublic:
                raise
            except OSError as e:
                raise Fallback(f"cannot resolve {parts.hostname}: {e}") from e
        try:
            transport, protocol = await loop.create_connection(
                lambda: _BodyProtocol(batch),
                address,
                port,
                ssl=_ssl_context(verify) if https else None,
                server_hostname=parts.hostname if https else None,
            )
        except OSError as e:
            raise Fallback(f"cannot connect: {e}") from e
        transport.write(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1"))
        try:
            await protocol.head_done
        except Exception as e:
            transport.close()
            raise Fallback(str(e)) from e
        if protocol.status in (301, 302, 303, 307, 308) and "location" in protocol.headers:
            transport.close()
            url = urljoin(url, protocol.headers["location"])
            continue
        if (
            protocol.remaining < 0
            or protocol.status != 200
            or (protocol.remaining == 0 and not protocol.done)
        ):
            transport.close()
            raise Fallback(f"answer {protocol.status}")
        return BlobBody(protocol, int(protocol.headers["content-length"]))
    raise Fallback("too many redirects")
