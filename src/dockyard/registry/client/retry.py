"""When and how patiently to retry: 5xx (but 501), 429, and dropped or stalled connections.

A registry that stops sending (or taking) bytes for the *stall timeout* --
``$DOCKYARD_REGISTRY_TIMEOUT`` seconds, default 30 -- has failed that try; replayable
requests are then retried like any dropped connection, and downloads resume.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.errors import RegistryError

if TYPE_CHECKING:  # imported by the functions that need it: a policy is made at import
    import httpx

log = logging.getLogger("dockyard.registry")

TIMEOUT_VAR = "DOCKYARD_REGISTRY_TIMEOUT"
DEFAULT_TIMEOUT = 30.0


def stall_timeout() -> float:
    """Seconds without a byte after which a try fails.

    ``$DOCKYARD_REGISTRY_TIMEOUT``, else :data:`DEFAULT_TIMEOUT`."""
    text = os.environ.get(TIMEOUT_VAR)
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise RegistryError(f"{TIMEOUT_VAR}={text!r}: expected a number of seconds above 0")
    return seconds


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all, waiting ``base_delay * 2**n`` (jittered, capped) between."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 15.0

    def delay(self, failures: int, retry_after: str | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed try (0-based).

        A numeric ``Retry-After`` lengthens it, up to ``max_delay``."""
        wait = min(self.max_delay, self.base_delay * 2**failures) * random.uniform(0.5, 1.0)
        if retry_after and retry_after.strip().isdigit():
            wait = max(wait, min(self.max_delay, float(retry_after)))
        return wait


def retryable_status(status: int) -> bool:
    """429 and server errors that may pass (not 501/505, which are permanent)."""
    return status == 429 or (500 <= status < 600 and status not in (501, 505))


def _is_tls_failure(error: BaseException) -> bool:
    import ssl

    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def is_transient(error: httpx.TransportError) -> bool:
    """Resets, timeouts and truncated answers; not TLS failures or bad URLs."""
    import httpx

    transient = httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
    return isinstance(error, transient) and not _is_tls_failure(error)


def describe(error: httpx.TransportError) -> str:
    """A short phrase for a transport failure, for error messages."""
    import httpx

    detail = str(error) or type(error).__name__
    if _is_tls_failure(error):
        return f"TLS failure ({detail}); for an insecure registry pass tls_verify=False"
    if isinstance(error, httpx.ReadTimeout | httpx.WriteTimeout):
        seconds = _timeout(error, "read" if isinstance(error, httpx.ReadTimeout) else "write")
        return f"stalled: no data for {seconds} (${TIMEOUT_VAR})"
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect ({detail})"
    return f"connection failed ({detail})"


def _timeout(error: httpx.TimeoutException, kind: str) -> str:
    """The ``kind`` timeout the failed request had, as ``30s``."""
    try:
        seconds = error.request.extensions["timeout"][kind]
    except (RuntimeError, KeyError, TypeError):  # no request attached: say no number
        return "too long"
    return f"{seconds:g}s"


def call_with_retries(
    policy: RetryPolicy, attempt: Callable[[], httpx.Response], what: str
) -> httpx.Response:
    """Call ``attempt`` until its answer is not retryable or the tries run out.

    Returns the last answer, whatever its status; re-raises the last transport error.
    An answer that is retried is closed.
    """
    import httpx

    failures = 0
    while True:
        try:
            response = attempt()
        except httpx.TransportError as e:
            if failures + 1 >= policy.attempts or not is_transient(e):
                raise
            wait = policy.delay(failures)
            log.debug("%s: %s; retrying in %.1fs", what, describe(e), wait)
        else:
            if failures + 1 >= policy.attempts or not retryable_status(response.status_code):
                return response
            response.close()
            wait = policy.delay(failures, response.headers.get("retry-after"))
            log.debug("%s: HTTP %d; retrying in %.1fs", what, response.status_code, wait)
        failures += 1
        time.sleep(wait)
