"""httpx imported for synchronous use only: without ``trio`` and httpx's own CLI.

httpcore imports trio, when it is installed, for the locks of its async pools, which
the registry client never uses; that import alone is 0.1-0.3 s of every push and pull.
httpx imports its command-line tool (click, rich, pygments) when they are installed:
another 20-40 ms. Importing this module first hides both while httpx and httpcore load;
trio stays importable afterwards for anything else (httpcore's async pools then support
asyncio only, ``httpx.main`` says the CLI is not installed).
"""

from __future__ import annotations

import sys

_HIDDEN = ("trio", "httpx._main")


def _import_httpx_for_sync_use() -> None:
    if "httpx" in sys.modules or "httpcore" in sys.modules:
        return
    hidden = [name for name in _HIDDEN if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # importing it now fails
    try:
        import httpcore  # noqa: F401  # httpx imports it only when a client is made
        import httpx  # noqa: F401
    finally:
        for name in hidden:
            del sys.modules[name]


_import_httpx_for_sync_use()
