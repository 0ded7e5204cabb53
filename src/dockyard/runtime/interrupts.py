"""Cleanup that a second Ctrl-C cannot cut short.

The first Ctrl-C raises :class:`KeyboardInterrupt` and starts the cleanup of mounts,
containers and namespaces; an impatient second one must not abandon it halfway and
leak them. Inside :func:`deferred`, SIGINT is only noted, and delivered again once the
block has finished (to whatever handler was there before).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT off for the block, then deliver it if one came.

    Python handles signals in the main thread only, so elsewhere this does nothing:
    there, Ctrl-C cannot interrupt the block anyway.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        signal.raise_signal(signal.SIGINT)
