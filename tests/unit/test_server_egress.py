"""The SSRF guard for client-named upstreams (``--allow-upstream '*'``): what counts as
public, and connections that resolve a name refused before they are made."""

from __future__ import annotations

import socket

import httpx
import pytest

from dockyard.registry.server import egress
from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.config import ServerConfig, check
from dockyard.registry.server.mirror import Mirror
from dockyard.registry.server.storage import Storage


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.0.1", False),
        ("100.64.0.1", False),
        ("fd00::1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        # IPv6 carrying an IPv4 address a translator or the host's stack reaches
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 to 169.254.169.254
        ("64:ff9b:1::a00:1", False),  # local-use NAT64 to 10.0.0.1
        ("::a9fe:a9fe", False),  # IPv4-compatible
        ("::ffff:0:a9fe:a9fe", False),  # SIIT
        ("2002:a9fe:a9fe::1", False),  # 6to4
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("64:ff9b::808:808", True),  # NAT64 (DNS64) to a public address
        ("2002:808:808::1", True),
        ("::ffff:8.8.8.8", True),
    ],
)
def test_is_public(address, public):
    assert egress.is_public(address) is public


def test_literals_refused_before_resolution():
    assert egress.literal_refused("127.0.0.1:5000")
    assert egress.literal_refused("10.0.0.1")
    assert not egress.literal_refused("8.8.8.8:443")
    assert not egress.literal_refused("localhost:5000")  # a name: checked when resolved


def test_a_name_resolving_to_loopback_is_never_connected_to():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        with pytest.raises(egress.NotPublic, match="not a public address"):
            egress.public_addresses("localhost", port)
        with (
            httpx.Client(transport=egress.GuardedTransport(2)) as client,
            pytest.raises(egress.NotPublic),
        ):
            client.get(f"http://localhost:{port}/v2/")
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing connected
    finally:
        listener.close()


def test_only_hosts_allowed_by_star_are_guarded(tmp_path):
    config = check(ServerConfig(tmp_path, allow_upstreams=("*", "127.0.0.1:5000")))
    mirror = Mirror(Storage(tmp_path), config)
    try:
        assert mirror.route("x/y", ns="registry.example").upstream.guarded
        assert not mirror.route("x/y", ns="127.0.0.1:5000").upstream.guarded
        for ns in ("127.0.0.1:5001", "169.254.169.254", "10.0.0.1:443"):
            with pytest.raises(APIError, match="not a public address"):
                mirror.route("x/y", ns=ns)
    finally:
        mirror.close()
