"""Killing a child process at a chosen point, as a crash or ``kill -9`` would: for the
tests that what a killed process leaves behind does no harm."""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def killed_when_ready(target: Callable[..., None], *args: object) -> Iterator[None]:
    """Run ``target(*args, ready_fd)`` in a forked child; the block runs once the child
    writes to ``ready_fd`` (and then waits for good); afterwards the child is SIGKILLed."""
    ready_r, ready_w = os.pipe()
    child = multiprocessing.get_context("fork").Process(target=target, args=(*args, ready_w))
    child.start()
    try:
        assert select.select([ready_r], [], [], 60)[0], "the child never got ready"
        yield
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        os.close(ready_r)
        os.close(ready_w)
    assert child.exitcode == -signal.SIGKILL


class StallingReader:
    """A stream that gives the first half of ``data``, then says it is ready and stops
    there for good: a writer that is killed mid-blob."""

    def __init__(self, data: bytes, ready_fd: int):
        self.data = data
        self.ready_fd = ready_fd
        self.given = False

    def read(self, n: int = -1) -> bytes:
        if not self.given:
            self.given = True
            return self.data[: len(self.data) // 2]
        os.write(self.ready_fd, b"1")
        signal.pause()
        return b""
