"""``login`` and ``logout``: check credentials against a registry, save or forget them."""

from __future__ import annotations

from pathlib import Path

from dockyard.registry.client import credentials
from dockyard.registry.client.client import RegistryClient
from dockyard.registry.client.factory import api_host


def login(host: str, username: str, password: str, *, tls_verify: bool | None = None) -> Path:
    """Check the credentials, then save them for ``host``; return the file.

    The check is an authenticated ``GET /v2/`` (raises ``AuthError`` if refused); saving is as
    ``credentials.store`` does."""
    user = credentials.Credentials(username, password)
    with RegistryClient(api_host(host), tls_verify=tls_verify, credentials=user) as client:
        client.ping()
    return credentials.store(host, user)


def logout(host: str) -> bool:
    """Forget the saved credentials for ``host``; False if there were none."""
    return credentials.erase(host)
