"""Running the server: uvicorn, TLS, logging.

uvicorn runs with httptools and uvloop when installed, with the request head deadline
of :mod:`slowclients`.
"""

from __future__ import annotations

import logging

from dockyard.registry.server.config import ConfigError, ServerConfig
from dockyard.registry.server.slowclients import http_protocol

log = logging.getLogger("dockyard.registry.server")


def parse_addr(addr: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--addr {addr!r}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class _DropTLSProbes(logging.Filter):
    """podman and skopeo try HTTPS first on an insecure registry: not worth a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


def serve(config: ServerConfig) -> None:
    """Serve until interrupted (SIGINT/SIGTERM finish the requests in flight)."""
    import uvicorn

    from dockyard.registry.server.app import create_app

    host, port = parse_addr(config.addr)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream request
    logging.getLogger("uvicorn.error").addFilter(_DropTLSProbes())
    app = create_app(config)
    scheme = "https" if config.tls_cert else "http"
    where = config.storage or config.root
    log.info("dockyard registry on %s://%s:%d, storage %s", scheme, host, port, where)
    for upstream in config.upstreams:
        log.info(
            "  %s/* mirrors %s (tag TTL %ss)",
            upstream.name,
            upstream.url,
            upstream.tag_ttl if upstream.tag_ttl is not None else config.tag_ttl,
        )
    if config.read_only:
        log.info("  read-only")
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=http_protocol(config.header_timeout),
        loop="auto",
        lifespan="on",
        access_log=config.access_log,
        log_level="info",
        ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
        ssl_keyfile=str(config.tls_key) if config.tls_key else None,
        timeout_keep_alive=30,
        server_header=False,
        date_header=True,
        h11_max_incomplete_event_size=64 << 10,
    )
