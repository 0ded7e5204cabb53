"""Upstreams a client names with containerd's ``?ns=HOST`` rather than the operator.

``--allow-upstream HOST`` (repeatable, or ``*`` for any host) lets the pull-through
cache fetch from a registry it was not configured for when a client asks with
``?ns=HOST``. Such a cache lives under ``ns/<host>/<path>`` (``ns/ghcr.io/org/app``;
a port becomes ``_PORT``: ``ns/127.0.0.1_5000/app``), a prefix no push may use once
any host is allowed, so what a client pushes never poses as what an upstream sent.
Docker Hub's names (``docker.io``, ``index.docker.io``, ``registry-1.docker.io``)
are one host, ``docker.io``. A host allowed only by ``*`` is reached at public
addresses only (:mod:`.egress`); one the operator names is not restricted.
"""

from __future__ import annotations

import re

from dockyard.reference import is_loopback_host
from dockyard.registry.server.config import HUB_HOSTS

NS_PREFIX = "ns"
ANY_HOST = "*"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*(?::(?P<port>[0-9]{{1,5}}))?$")
_COMPONENT_PORT_RE = re.compile(r"^(?P<host>.+)_(?P<port>[0-9]{1,5})$")


def normalize_host(text: str) -> str | None:
    """``host[:port]`` in lowercase, Docker Hub's aliases as ``docker.io``.

    None for anything else (IPv6 literals, user info, paths, ``_``).
    """
    host = text.strip().lower()
    match = _HOST_RE.match(host)
    if match is None or (match["port"] and not 0 < int(match["port"]) < 65536):
        return None
    return "docker.io" if host in HUB_HOSTS else host


def url_of(host: str) -> str:
    """Where a client-named upstream is asked: HTTPS, plain HTTP only on loopback.

    Our client does the same for any loopback registry.
    """
    if host == "docker.io":
        return "https://registry-1.docker.io"
    return f"{'http' if is_loopback_host(host) else 'https'}://{host}"


def cache_prefix(host: str) -> str:
    """``ns/<host>``, the repository prefix of a client-named upstream's cache."""
    return f"{NS_PREFIX}/{host.replace(':', '_')}"


def host_of_prefix(component: str) -> str | None:
    """The host a ``ns/<component>`` cache is for (the inverse of :func:`cache_prefix`)."""
    match = _COMPONENT_PORT_RE.match(component)
    host = f"{match['host']}:{match['port']}" if match else component
    return host if normalize_host(host) == host else None


class AllowList:
    """The hosts ``--allow-upstream`` names (normalised), or any host with ``*``."""

    def __init__(self, patterns: tuple[str, ...]):
        self.any = ANY_HOST in patterns
        self.hosts = frozenset(h for p in patterns if p != ANY_HOST and (h := normalize_host(p)))

    def __bool__(self) -> bool:
        return self.any or bool(self.hosts)

    def permits(self, host: str) -> bool:
        return self.any or host in self.hosts
