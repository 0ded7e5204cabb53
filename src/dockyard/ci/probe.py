"""Is a TCP port open on 127.0.0.1 of a network namespace? Asked from this process.

A service listens on the loopback of the run's network namespace, which the host cannot
reach. Rather than start a probe container, a short-lived thread joins the namespace
with ``setns(2)``, which moves only the calling thread, and tries to connect there; it
exits when done, so no other thread ever changes namespace (as in
:mod:`dockyard.runtime.netns`). Python 3.11 has no ``os.setns``, hence ``ctypes``.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
# Seconds between attempts: a tenth of the time waited so far, within these bounds. A
# service is found ready at most ~10% (or 5 ms) after it is, and one slow to start is not
# asked thousands of times.
MIN_INTERVAL, MAX_INTERVAL = 0.005, 0.1


def wait_for_tcp(netns: Path, port: int, deadline: float, stop: Callable[[], bool]) -> bool:
    """Try to connect to ``127.0.0.1:port`` in the namespace ``netns`` until it works.

    True once it works; False once ``time.monotonic()`` passes ``deadline`` or ``stop()`` says so.
    """
    outcome: list[bool | BaseException] = []
    worker = threading.Thread(
        target=_probe, args=(netns, port, deadline, stop, outcome), name="dockyard-probe"
    )
    worker.start()
    worker.join()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _probe(
    netns: Path,
    port: int,
    deadline: float,
    stop: Callable[[], bool],
    outcome: list[bool | BaseException],
) -> None:
    """Runs in its own thread, which it leaves in ``netns``: it then exits."""
    try:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(ctypes.c_int(fd), ctypes.c_int(_CLONE_NEWNET)) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"setns {netns}: {os.strerror(code)}")
        finally:
            os.close(fd)
        started = time.monotonic()
        while not stop():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    outcome.append(True)
                    return
            except OSError:
                pass
            now = time.monotonic()
            interval = min(MAX_INTERVAL, max(MIN_INTERVAL, (now - started) / 10))
            if now >= deadline:
                outcome.append(False)
                return
            time.sleep(min(interval, deadline - now))  # a last try at the deadline
        outcome.append(False)
    except BaseException as e:  # reported to the caller's thread
        outcome.append(e)
