"""One shared :class:`RegistryClient` per registry host (and TLS choice) per process.

Or per :class:`CredentialScope` for code that must not use the host's registry logins.

A mirror's client (``mirror=True``) is another one, which gives up sooner: a pull falls
back to the source registry when a mirror fails, rather than wait out every retry."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from dockyard.reference import DOCKER_HUB_API, Reference
from dockyard.registry.client.credentials import Credentials, canonical_host
from dockyard.registry.client.retry import RetryPolicy

if TYPE_CHECKING:  # imported with the first client: a scope that pulls nothing needs no httpx
    from dockyard.registry.client.client import RegistryClient

_Key = tuple[str, bool | None, bool]  # host, tls_verify, mirror
_clients: dict[_Key, RegistryClient] = {}
_lock = threading.Lock()

ANONYMOUS = Credentials()
"""Credentials that are none: a client given them never reads the host's auth files."""

MIRROR_RETRY = RetryPolicy(attempts=2, base_delay=0.2)
"""A mirror is tried twice: then the source registry is the better bet."""


def api_host(host: str) -> str:
    """The host serving a registry's API (Docker Hub's is ``registry-1.docker.io``)."""
    return DOCKER_HUB_API if canonical_host(host) == "docker.io" else host


def client_for(
    target: Reference | str, tls_verify: bool | None = None, *, mirror: bool = False
) -> RegistryClient:
    """The client for a reference's registry or a ``host[:port]``.

    A host may serve as a pull ``mirror``. The active :class:`CredentialScope`'s client, else the
    process-wide one (the host's logins)."""
    host = target.api_host if isinstance(target, Reference) else api_host(target)
    scope = _SCOPE.get()
    if scope is not None:
        return scope.client(host, tls_verify, mirror=mirror)
    from dockyard.registry.client.client import RegistryClient

    with _lock:
        client = _clients.get((host, tls_verify, mirror))
        if client is None:
            client = _clients[host, tls_verify, mirror] = RegistryClient(
                host, tls_verify=tls_verify, retry=MIRROR_RETRY if mirror else None
            )
        return client


class CredentialScope:
    """The registry credentials one job may use, in place of the host's own logins.

    A pipeline run's, given to it; the host's logins are docker's ``config.json`` and ``dockyard
    login``.

    In an :meth:`active` block (its thread, and contexts copied from it) :func:`client_for`
    gives clients that authenticate to a host of ``credentials`` (keyed by host, as in a
    docker config) with those, and go anonymous to any other host; with
    ``host_credentials`` (an operator's explicit choice) to the others with the host's
    logins instead. :meth:`close` closes the clients it made.
    """

    def __init__(
        self, credentials: Mapping[str, Credentials] | None = None, *, host_credentials: bool
    ):
        self._credentials = {canonical_host(h): c for h, c in (credentials or {}).items()}
        self.host_credentials = host_credentials
        self._clients: dict[_Key, RegistryClient] = {}
        self._lock = threading.Lock()

    def client(
        self, host: str, tls_verify: bool | None = None, *, mirror: bool = False
    ) -> RegistryClient:
        """The client for ``host`` (as a pull ``mirror``) under this scope's credentials.

        A mirror's credentials are those given for the mirror's own host."""
        credentials = self._credentials.get(canonical_host(host))
        if credentials is None and self.host_credentials:
            token = _SCOPE.set(None)
            try:
                return client_for(host, tls_verify, mirror=mirror)
            finally:
                _SCOPE.reset(token)
        from dockyard.registry.client.client import RegistryClient

        with self._lock:
            client = self._clients.get((host, tls_verify, mirror))
            if client is None:
                client = RegistryClient(
                    host,
                    tls_verify=tls_verify,
                    credentials=credentials or ANONYMOUS,
                    retry=MIRROR_RETRY if mirror else None,
                )
                self._clients[host, tls_verify, mirror] = client
            return client

    @contextlib.contextmanager
    def active(self) -> Iterator[CredentialScope]:
        """:func:`client_for` answers from this scope in the block."""
        token = _SCOPE.set(self)
        try:
            yield self
        finally:
            _SCOPE.reset(token)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


_SCOPE: contextvars.ContextVar[CredentialScope | None] = contextvars.ContextVar(
    "dockyard_registry_credentials", default=None
)
