"""The NAT'd network's pieces that need no root: which host addresses it refuses, the
route it refuses them with, and how it changes a container's config."""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import subprocess

import pytest

from dockyard.runtime import ContainerConfig
from dockyard.runtime.nat import (
    NAMESERVER,
    NatNetwork,
    _blocked,
    _reject_route,
    _RtEntry,
    host_networks,
)
from dockyard.runtime.netns import in_new_netns
from tests.conftest import need

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
              /32 host LOCAL
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
     |-- 198.51.100.7
        /32 host LOCAL
     |-- 203.0.113.0
        /28 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
           |-- 192.0.2.2
              /32 host LOCAL
"""


def test_host_networks_are_every_local_address_but_loopback():
    assert [str(n) for n in host_networks(FIB_TRIE)] == [
        "192.0.2.0/32",  # a leaf's second line counts too
        "192.0.2.2/32",
        "198.51.100.7/32",
        "203.0.113.0/28",  # a local route for a whole range (AnyIP)
    ]


def test_host_networks_of_this_machine_are_its_own_addresses():
    """Every non-loopback IPv4 address `ip` lists is covered; nothing loopback is."""
    need("ip")
    listed = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout.split()
    own = [ipaddress.IPv4Interface(w).ip for i, w in enumerate(listed) if listed[i - 1] == "inet"]
    networks = host_networks()
    assert not any(network.is_loopback for network in networks)
    for address in own:
        assert address.is_loopback or any(address in network for network in networks), address


def test_routes_never_take_slirps_own_addresses():
    networks = [ipaddress.IPv4Network(n) for n in ("10.0.2.2/32", "10.0.2.15/32", "10.0.0.0/8")]
    # a /32 on the gateway would cut the NAT off; 10.0.2.15 and a wider range are fine
    # (the namespace's own /24 route wins over a wider reject route)
    assert [str(n) for n in _blocked(networks)] == ["10.0.2.15/32", "10.0.0.0/8"]


def test_a_reject_route_is_a_struct_rtentry():
    assert ctypes.sizeof(_RtEntry) == (120 if ctypes.sizeof(ctypes.c_void_p) == 8 else 64)
    route = _reject_route(ipaddress.IPv4Network("192.0.2.2/32"))
    assert bytes(route.dst.address) == socket.inet_aton("192.0.2.2")
    assert bytes(route.genmask.address) == b"\xff" * 4
    assert route.dst.family == socket.AF_INET
    assert route.flags == 0x1 | 0x4 | 0x200  # RTF_UP | RTF_HOST | RTF_REJECT
    wide = _reject_route(ipaddress.IPv4Network("203.0.113.0/28"))
    assert bytes(wide.genmask.address) == socket.inet_aton("255.255.255.240")
    assert wide.flags == 0x1 | 0x200


def test_apply_joins_the_namespace_with_the_nats_resolver_and_no_raw_sockets():
    network = NatNetwork.__new__(NatNetwork)  # no namespace: only its path is used
    network.path = "/proc/1/fd/9"
    config = network.apply(ContainerConfig(args=["sh"], drop_capabilities=["CAP_MKNOD"]))
    assert config.network == "/proc/1/fd/9"
    assert config.dns == (NAMESERVER,)
    assert set(config.drop_capabilities) == {"CAP_MKNOD", "CAP_NET_RAW"}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_SYS_ADMIN)")
def test_a_namespace_of_its_own_with_loopback_up_and_the_host_refused():
    own = os.stat("/proc/thread-self/ns/net").st_ino

    def inside() -> int:
        with socket.socket() as s:  # loopback is up: a listener there answers
            s.bind(("127.0.0.1", 0))
            s.listen()
            socket.create_connection(s.getsockname(), timeout=5).close()
        return os.stat("/proc/thread-self/ns/net").st_ino

    assert own != in_new_netns(inside)
    assert os.stat("/proc/thread-self/ns/net").st_ino == own  # this thread never moved
    with pytest.raises(ZeroDivisionError):  # raised here, as it was raised there
        in_new_netns(lambda: 1 // 0)
    need("slirp4netns")
    with NatNetwork() as network:
        shown = subprocess.run(
            [
                "nsenter",
                f"--net={network.path}",
                "ip",
                "-4",
                "route",
                "show",
                "type",
                "unreachable",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    refused = {ipaddress.ip_network(line.split()[1]) for line in shown.splitlines()}
    assert refused == set(_blocked(host_networks())) != set()
