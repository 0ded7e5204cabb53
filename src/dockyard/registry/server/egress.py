"""Connections to upstreams a client named: public addresses only (an SSRF guard).

A client names them with ``?ns=`` under ``--allow-upstream '*'``. Any host is then a
client's choice, so without a guard ``?ns=127.0.0.1:8080``, ``?ns=169.254.169.254`` or a
name resolving to the registry host's private network would make the registry fetch from
services only it can reach. A guarded connection resolves the host, refuses it unless
*every* address is public (not loopback, link-local, private, shared, reserved,
multicast or unspecified; IPv4-mapped IPv6 is checked as IPv4), and connects to an
address it checked -- never resolving the name a second time, so a DNS answer that
changes between check and use (rebinding) gains nothing. TLS still verifies the
certificate for the host name. Every connection is guarded, so are redirects and token
realms the upstream names. Hosts the operator allowed by name are not guarded: the
operator chose them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import httpcore
import httpx
from httpcore._backends.sync import SyncBackend

from dockyard.registry.client.tls import LazyTrustContext


class NotPublic(OSError):
    """A guarded host resolves to an address of the registry's own networks."""


# IPv6 prefixes whose last 32 bits are an IPv4 address a translator or the host's own
# stack reaches: NAT64 (RFC 6052, and RFC 8215's local use), IPv4-compatible, SIIT.
_IPV4_IN_LOW_BITS = tuple(
    ipaddress.ip_network(prefix)
    for prefix in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96", "::ffff:0:0:0/96")
)


def is_public(address: str) -> bool:
    """Whether ``address`` (an IP literal) is a public unicast address.

    An IPv6 address that carries an IPv4 one (mapped, NAT64, compatible, SIIT, 6to4,
    Teredo) is public only if that IPv4 address is.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public(str(embedded)) and (ip.is_global or _translated(ip))
    return ip.is_global and not ip.is_multicast


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address; the server's is the relay's
    if ip != ipaddress.IPv6Address("::") and any(ip in net for net in _IPV4_IN_LOW_BITS):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _translated(ip: ipaddress.IPv6Address) -> bool:
    """Prefixes Python does not count as global, though a translator behind them reaches
    the public IPv4 address they carry (NAT64's well-known prefix, mapped addresses)."""
    return ip.ipv4_mapped is not None or ip in _IPV4_IN_LOW_BITS[0]


def literal_refused(host: str) -> bool:
    """Whether ``host`` is an IP literal no guarded connection may reach.

    ``host`` is ``name[:port]``. Such a host is refused before any connection (names are
    checked when they are resolved).
    """
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        return not is_public(name)
    except ValueError:
        return False


def _check(host: str, infos: list[Any]) -> list[str]:
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise NotPublic(f"upstream {host}: no address")
    refused = [a for a in addresses if not is_public(a)]
    if refused:
        raise NotPublic(f"upstream {host} resolves to {refused[0]}, not a public address")
    return addresses


def public_addresses(host: str, port: int) -> list[str]:
    """Every address of ``host``, all checked public; :class:`NotPublic` otherwise."""
    return _check(host, socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))


async def public_addresses_async(host: str, port: int) -> list[str]:
    """:func:`public_addresses`, resolved without blocking the event loop."""
    loop = asyncio.get_running_loop()
    return _check(host, await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))


class _GuardedBackend(SyncBackend):
    """httpcore's socket backend, connecting only to checked public addresses."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in public_addresses(host, port):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as e:
                error = e
        assert error is not None
        raise error


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport whose every connection goes through :class:`_GuardedBackend`.

    Certificates are verified as our client verifies them.
    """

    def __init__(self, max_connections: int):
        super().__init__()
        # HTTPTransport takes no network backend: its pool is replaced by one that has ours
        self._pool = httpcore.ConnectionPool(
            ssl_context=LazyTrustContext(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            network_backend=_GuardedBackend(),
        )
