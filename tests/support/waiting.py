"""Waiting for something another process or thread does, instead of sleeping for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

PATIENCE = 60.0  # seconds: what a loaded 2-core CI machine may need to start or finish a step


def wait_until(condition: Callable[[], T], what: str, timeout: float = PATIENCE) -> T:
    """``condition()``'s first truthy value, polled every 10 ms; fails naming ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)
