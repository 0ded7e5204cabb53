"""Small HTTP servers for tests, on loopback, each in a thread of its own."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

POLL_INTERVAL = 0.01  # serve_forever's default (0.5 s) is how long every shutdown waits


def serve_in_thread(server: ThreadingHTTPServer) -> ThreadingHTTPServer:
    """Serve ``server`` from a daemon thread; its ``shutdown()`` returns within
    :data:`POLL_INTERVAL`."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
    )
    thread.start()
    return server
