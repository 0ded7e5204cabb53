"""The OCI distribution / Docker registry v2 client.

```python
from dockyard.registry.client import client_for

client = client_for("127.0.0.1:5000")
raw = client.get_manifest("library/busybox", "latest")
with client.open_blob("library/busybox", layer) as stream:  # verified at EOF
    ...
```
"""

from dockyard.registry.client import synchttpx  # noqa: F401  # first: httpx without trio
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
