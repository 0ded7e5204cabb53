"""The registry server: OCI distribution API, pull-through cache, bundles and gc.

It serves the OCI distribution API over a directory, a pull-through cache for many
upstreams, offline bundles (export/import) and garbage collection.

```python
from pathlib import Path
from dockyard.registry.server import ServerConfig, create_app, serve

config = ServerConfig(Path("/srv/registry"), addr="0.0.0.0:5000")
serve(config)                      # or: uvicorn.run(create_app(config), ...)
```

Heavy imports (Starlette, uvicorn) happen only in :func:`create_app` and :func:`serve`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.registry.server.config import ConfigError, ServerConfig, UpstreamConfig
from dockyard.registry.server.storage import Storage

if TYPE_CHECKING:
    from dockyard.registry.server.app import RegistryApp


def create_app(config: ServerConfig) -> RegistryApp:
    from dockyard.registry.server.app import create_app as _create

    return _create(config)


def serve(config: ServerConfig) -> None:
    from dockyard.registry.server.run import serve as _serve

    _serve(config)


def collect_garbage(storage: Storage, **kw: Any):
    from dockyard.registry.server.gc import collect

    return collect(storage, **kw)


__all__ = [
    "ConfigError",
    "ServerConfig",
    "Storage",
    "UpstreamConfig",
    "collect_garbage",
    "create_app",
    "serve",
]
