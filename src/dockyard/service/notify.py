"""Waking long polls and log followers when something changes in this process.

Handlers that change the database (in worker threads) call :meth:`Notifier.notify`;
waiters in the event loop wake at once. Changes made by another server process are
seen by the waiters' periodic re-check (their ``timeout``), so several servers on one
database stay correct, only a little slower.
"""

from __future__ import annotations

import asyncio
import contextlib


class Notifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake waiters of ``loop`` (the server's, set on startup)."""
        self._loop = loop
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Something changed; callable from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        if event is not None:
            event.set()

    async def wait(self, timeout: float) -> None:
        """Until the next :meth:`notify`, at most ``timeout`` seconds."""
        if self._event is None:
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
