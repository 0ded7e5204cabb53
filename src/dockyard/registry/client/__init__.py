"""The OCI distribution / Docker registry v2 client.

```python
from dockyard.registry.client import client_for

client = client_for("127.0.0.1:5000")
raw = client.get_manifest("library/busybox", "latest")
with client.open_blob("library/busybox", layer) as stream:  # verified at EOF
    ...
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard import lazy

if TYPE_CHECKING:
    from dockyard.registry.client.auth import CATALOG_SCOPE, pull_scope, push_scope
    from dockyard.registry.client.challenge import Challenge, parse_www_authenticate
    from dockyard.registry.client.client import (
        DEFAULT_CHUNK_SIZE,
        MANIFEST_ACCEPT,
        RegistryClient,
        RegistryManifest,
    )
    from dockyard.registry.client.credentials import Credentials
    from dockyard.registry.client.factory import CredentialScope, api_host, client_for
    from dockyard.registry.client.homes import RegistryDestination, RegistrySource
    from dockyard.registry.client.login import login, logout
    from dockyard.registry.client.retry import RetryPolicy
    from dockyard.registry.client.upload import Opener, StreamNotReopenable

# Imported on first use: httpx (and httpcore, which imports trio where installed) costs
# ~0.1 s, which reading a credentials file or a pipeline run that pulls nothing need not pay.
_WHERE = {
    "CATALOG_SCOPE": "auth",
    "pull_scope": "auth",
    "push_scope": "auth",
    "Challenge": "challenge",
    "parse_www_authenticate": "challenge",
    "DEFAULT_CHUNK_SIZE": "client",
    "MANIFEST_ACCEPT": "client",
    "RegistryClient": "client",
    "RegistryManifest": "client",
    "Credentials": "credentials",
    "CredentialScope": "factory",
    "api_host": "factory",
    "client_for": "factory",
    "RegistryDestination": "homes",
    "RegistrySource": "homes",
    "login": "login",
    "logout": "login",
    "RetryPolicy": "retry",
    "Opener": "upload",
    "StreamNotReopenable": "upload",
}

__all__ = [
    "CATALOG_SCOPE",
    "DEFAULT_CHUNK_SIZE",
    "MANIFEST_ACCEPT",
    "Challenge",
    "CredentialScope",
    "Credentials",
    "Opener",
    "RegistryClient",
    "RegistryDestination",
    "RegistryManifest",
    "RegistrySource",
    "RetryPolicy",
    "StreamNotReopenable",
    "api_host",
    "client_for",
    "login",
    "logout",
    "parse_www_authenticate",
    "pull_scope",
    "push_scope",
]

__getattr__ = lazy.exports(__name__, _WHERE)
