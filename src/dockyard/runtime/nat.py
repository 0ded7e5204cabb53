"""A private network namespace with outbound access through user-mode NAT.

The default network of RUN steps and ``dockyard run``: the container gets a namespace
of its own whose only way out is `slirp4netns`_, a process on the host that turns the
namespace's TCP and UDP traffic into ordinary sockets of its own. So package downloads
work, and nothing of the host's network is reachable that a remote machine could not
reach too:

- the host's loopback: slirp4netns ``--disable-host-loopback`` refuses its gateway
  address (``10.0.2.2``, which would be the host's 127.0.0.1); its DNS address
  (``10.0.2.3``) forwards port 53 (UDP and TCP) to the host's resolver, no other port;
- the host's own addresses (any interface's, read from ``/proc/net/fib_trie`` when the
  namespace is made; one the host gains later is not covered): a reject route for
  each in the namespace. A container never has ``CAP_NET_ADMIN`` (the routes stay)
  and on this network not ``CAP_NET_RAW`` either, which would let it write frames
  past the routes straight to slirp4netns;
- IPv6: slirp4netns runs without it, so the namespace has no IPv6 route out.

The namespace is held by an open file descriptor, not a mount, and containers join it
by ``/proc/<our pid>/fd/<fd>``. slirp4netns also ends when the pipe we hold
(``--exit-fd``) closes, so a dockyard process killed outright leaves neither a mount
nor a process behind. Start-up is ~5 ms (slirp4netns says when it is ready through
``--ready-fd``); a build makes one network for all its RUN steps, in a thread while the
steps before the first of them run.

.. _slirp4netns: https://github.com/rootless-containers/slirp4netns
"""

from __future__ import annotations

import _socket  # not socket, slow to import (see netns.ioctl_socket)
import contextlib
import ctypes
import dataclasses
import fcntl
import ipaddress
import os
import select
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator

from dockyard.errors import ContainerError
from dockyard.runtime.config import ContainerConfig
from dockyard.runtime.netns import in_new_netns, ioctl_socket

SLIRP4NETNS = "slirp4netns"
GATEWAY = "10.0.2.2"  # slirp4netns's defaults for --cidr=10.0.2.0/24
NAMESERVER = "10.0.2.3"
ADDRESS = "10.0.2.100"
INTERFACE = "tap0"
MTU = 65520  # what rootless podman uses: far faster than 1500 through slirp
READY_TIMEOUT = 10.0  # seconds
DROPPED_CAPABILITIES = ("CAP_NET_RAW",)

_SIOCADDRT = 0x890B
_RTF_UP = 0x1
_RTF_HOST = 0x4
_RTF_REJECT = 0x200


class NatNetwork:
    """A network namespace with outbound NAT, until :meth:`close` (or the ``with`` block).

    :meth:`apply` puts a container config on it."""

    def __init__(self) -> None:
        self._netns_fd = _new_netns(_blocked(host_networks()))
        self.path = f"/proc/{os.getpid()}/fd/{self._netns_fd}"
        self._exit_fd: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        try:
            self._start_slirp()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> NatNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def apply(self, config: ContainerConfig) -> ContainerConfig:
        """``config`` in this network: its namespace, its name server, no raw sockets."""
        return dataclasses.replace(
            config,
            network=self.path,
            dns=(NAMESERVER,),
            drop_capabilities=tuple({*config.drop_capabilities, *DROPPED_CAPABILITIES}),
        )

    def close(self) -> None:
        """Stop slirp4netns and let the namespace go (when its last container has); idempotent."""
        if self._process is not None:
            # It keeps no state: kill it. Its exit takes ~20 ms (the kernel removes its
            # tap device), which nobody needs to wait for: a thread reaps it.
            self._process.kill()
            threading.Thread(target=self._process.wait, daemon=True).start()
            self._process = None
        if self._exit_fd is not None:
            os.close(self._exit_fd)
            self._exit_fd = None
        if self._netns_fd >= 0:
            os.close(self._netns_fd)
            self._netns_fd = -1

    def _start_slirp(self) -> None:
        ready_read, ready_write = os.pipe()
        exit_read, self._exit_fd = os.pipe()
        with tempfile.TemporaryFile() as errors:
            try:
                self._process = subprocess.Popen(
                    [
                        SLIRP4NETNS,
                        "--configure",
                        f"--mtu={MTU}",
                        "--disable-host-loopback",
                        "--enable-sandbox",
                        "--enable-seccomp",
                        "--netns-type=path",
                        f"--ready-fd={ready_write}",
                        f"--exit-fd={exit_read}",
                        self.path,
                        INTERFACE,
                    ],
                    pass_fds=(ready_write, exit_read),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    start_new_session=True,  # Ctrl-C is ours to handle: close() stops it
                )
            except OSError as e:
                raise ContainerError(
                    f"cannot start {SLIRP4NETNS} for the default network (--network none or "
                    f"host need none): {e.strerror}"
                ) from None
            finally:
                os.close(ready_write)
                os.close(exit_read)
            try:
                ready, _, _ = select.select([ready_read], [], [], READY_TIMEOUT)
                answer = os.read(ready_read, 1) if ready else b""
            finally:
                os.close(ready_read)
            if answer != b"1":
                self._process.kill()
                self._process.wait()
                errors.seek(0)
                lines = errors.read().decode(errors="replace").strip().splitlines()
                why = lines[-1] if lines else "not ready in time"
                raise ContainerError(f"{SLIRP4NETNS} failed: {why}")


@contextlib.contextmanager
def nat_network() -> Iterator[NatNetwork]:
    """A :class:`NatNetwork` for the duration of the block."""
    with NatNetwork() as network:
        yield network


def host_networks(fib_trie: str | None = None) -> list[ipaddress.IPv4Network]:
    """The host's own IPv4 addresses but loopback ones, as networks.

    A ``/32`` each, or a wider ``local`` route, from ``/proc/net/fib_trie``: the kernel's table of
    local addresses, every interface's, secondaries too."""
    if fib_trie is None:
        with open("/proc/net/fib_trie") as f:
            fib_trie = f.read()
    found: dict[ipaddress.IPv4Network, None] = {}
    leaf = ""
    for line in fib_trie.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] in ("|--", "+--"):
            leaf = fields[1].partition("/")[0] if fields[0] == "|--" else ""
        elif leaf and fields[1:3] == ["host", "LOCAL"] and fields[0].startswith("/"):
            network = ipaddress.IPv4Network(f"{leaf}{fields[0]}", strict=False)
            if not network.is_loopback:
                found[network] = None
    return list(found)


def _blocked(networks: Iterable[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    """``networks`` but those a reject route would take slirp4netns's own addresses
    from (a route at least as narrow as its ``/24``; a wider one loses to that)."""
    own = [ipaddress.IPv4Address(a) for a in (GATEWAY, NAMESERVER, ADDRESS)]
    return [n for n in networks if n.prefixlen < 24 or not any(a in n for a in own)]


def _new_netns(blocked: Iterable[ipaddress.IPv4Network]) -> int:
    """A new network namespace with loopback up and a reject route for each of
    ``blocked``, as an open fd."""

    def setup() -> int:
        fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with ioctl_socket() as s:
                for network in blocked:
                    fcntl.ioctl(s, _SIOCADDRT, bytes(_reject_route(network)))
        except BaseException:
            os.close(fd)
            raise
        return fd

    try:
        return in_new_netns(setup)
    except Exception as e:
        raise ContainerError(f"cannot make a network namespace: {e}") from e


class _SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_ushort),
        ("port", ctypes.c_ushort),
        ("address", ctypes.c_ubyte * 4),
        ("zero", ctypes.c_ubyte * 8),
    ]


class _RtEntry(ctypes.Structure):
    """``struct rtentry`` of ``SIOCADDRT`` (net/route.h)."""

    _fields_ = [
        ("pad1", ctypes.c_ulong),
        ("dst", _SockaddrIn),
        ("gateway", _SockaddrIn),
        ("genmask", _SockaddrIn),
        ("flags", ctypes.c_ushort),
        ("pad2", ctypes.c_short),
        ("pad3", ctypes.c_ulong),
        ("pad4", ctypes.c_void_p),
        ("metric", ctypes.c_short),
        ("dev", ctypes.c_char_p),
        ("mtu", ctypes.c_ulong),
        ("window", ctypes.c_ulong),
        ("irtt", ctypes.c_ushort),
    ]


def _reject_route(network: ipaddress.IPv4Network) -> _RtEntry:
    """A route to ``network`` that refuses every packet (``EHOSTUNREACH``)."""

    def sockaddr(address: ipaddress.IPv4Address) -> _SockaddrIn:
        return _SockaddrIn(_socket.AF_INET, 0, (ctypes.c_ubyte * 4)(*address.packed))

    host = _RTF_HOST if network.prefixlen == 32 else 0
    return _RtEntry(
        dst=sockaddr(network.network_address),
        genmask=sockaddr(network.netmask),
        flags=_RTF_UP | host | _RTF_REJECT,
    )
