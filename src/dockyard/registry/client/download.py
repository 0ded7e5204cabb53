"""A blob download stream that survives dropped connections by resuming with ``Range``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx

from dockyard.errors import RegistryError
from dockyard.oci.digest import CHUNK
from dockyard.registry.client.retry import RetryPolicy, describe, is_transient, log


class ResumingStream:
    """Read a blob from ``fetch(offset)`` answers (200, or 206 from ``offset``).

    A reset or timeout mid-body asks for the rest again, up to the policy's attempts; a
    server that ignores ``Range`` answers 200 and the bytes already had are skipped.
    """

    def __init__(
        self,
        fetch: Callable[[int], httpx.Response],
        retry: RetryPolicy,
        where: str,
    ):
        self._fetch = fetch
        self._retry = retry
        self._where = where
        self._received = 0
        self._failures = 0
        self._buffer = b""
        self._response = fetch(0)
        self._chunks = self._body(self._response, 0)

    def _body(self, response: httpx.Response, skip: int) -> Iterator[bytes]:
        for chunk in response.iter_raw():  # as received, so a reset loses nothing
            if skip:
                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
            if chunk:
                yield chunk

    def _next_chunk(self) -> bytes:
        while True:
            try:
                chunk = next(self._chunks, b"")
            except httpx.TransportError as e:
                if self._failures + 1 >= self._retry.attempts or not is_transient(e):
                    tries = f" ({self._failures + 1} tries)" if self._failures else ""
                    raise RegistryError(f"{self._where}: {describe(e)}{tries}") from e
                wait = self._retry.delay(self._failures)
                log.debug("%s: %s at byte %d; resuming", self._where, describe(e), self._received)
                self._failures += 1
                self._response.close()
                time.sleep(wait)
                self._response = self._fetch(self._received)
                self._chunks = self._body(self._response, self._skip(self._response))
                continue
            self._received += len(chunk)
            return chunk

    def _skip(self, response: httpx.Response) -> int:
        """How many bytes of a resumed answer we already have."""
        if response.status_code == 200:
            return self._received
        start = response.headers.get("content-range", "").removeprefix("bytes ").split("-")[0]
        if start != str(self._received):
            response.close()
            raise RegistryError(
                f"{self._where}: asked to resume at byte {self._received}, "
                f"got Content-Range {response.headers.get('content-range')!r}"
            )
        return 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        if not self._buffer:
            self._buffer = self._next_chunk()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._response.close()
