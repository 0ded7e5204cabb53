"""One shared :class:`RegistryClient` per registry host (and TLS choice) per process."""

from __future__ import annotations

import threading

from dockyard.reference import DOCKER_HUB_API, Reference
from dockyard.registry.client.client import RegistryClient
from dockyard.registry.client.credentials import canonical_host

_clients: dict[tuple[str, bool | None], RegistryClient] = {}
_lock = threading.Lock()


def api_host(host: str) -> str:
    """The host serving a registry's API (Docker Hub's is ``registry-1.docker.io``)."""
    return DOCKER_HUB_API if canonical_host(host) == "docker.io" else host


def client_for(target: Reference | str, tls_verify: bool | None = None) -> RegistryClient:
    """The process-wide client for a reference's registry or a ``host[:port]``."""
    host = target.api_host if isinstance(target, Reference) else api_host(target)
    with _lock:
        client = _clients.get((host, tls_verify))
        if client is None:
            client = _clients[host, tls_verify] = RegistryClient(host, tls_verify=tls_verify)
        return client
