"""The TLS context of registry connections: verifying, with the CA bundle loaded late.

The bundle is loaded at the first handshake rather than when the client is made.

Loading the bundle costs ~25 ms, which every registry command would pay at start-up even
when it only talks plain HTTP to a loopback registry. The trust sources are httpx's:
``SSL_CERT_FILE``, else ``SSL_CERT_DIR``, else certifi's bundle.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any


class LazyTrustContext(ssl.SSLContext):
    """A client TLS context that loads its CA certificates just before its first use.

    A client context (hostname checks, certificates required) that loads its CA certificates just
    before its first socket or BIO is wrapped; thread-safe."""

    _loaded = False
    _lock = threading.Lock()  # shared by all instances: loading is rare and short

    def __new__(cls) -> LazyTrustContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def _load_trust(self) -> None:
        with self._lock:
            if self._loaded:
                return
            if cafile := os.environ.get("SSL_CERT_FILE"):
                self.load_verify_locations(cafile=cafile)
            elif capath := os.environ.get("SSL_CERT_DIR"):
                self.load_verify_locations(capath=capath)
            else:
                import certifi

                self.load_verify_locations(cafile=certifi.where())
            self._loaded = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load_trust()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load_trust()
        return super().wrap_bio(*args, **kwargs)
