"""The ``/etc/hosts``, ``/etc/resolv.conf`` and ``/etc/hostname`` a container sees.

They are written next to the runtime spec and bind-mounted over the rootfs's files,
never written into the rootfs: a RUN step must not commit them into a layer, and each
container may have its own (pipeline services reachable by name, say).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path

from dockyard.runtime.config import HOST

LOCALHOST = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)

FILES = ("hosts", "resolv.conf", "hostname")
"""The files :func:`write` makes, each mounted at ``/etc/<name>``."""


def hosts(hostname: str, network: str, extra: Mapping[str, str]) -> str:
    """With the host's network, the host's own file; else localhost and the hostname.

    ``extra`` (name -> address) comes last."""
    text = _read("/etc/hosts") if network == HOST else None
    if text is None:
        text = LOCALHOST + f"127.0.1.1\t{hostname}\n"
    elif not text.endswith("\n"):
        text += "\n"
    return text + "".join(f"{address}\t{name}\n" for name, address in extra.items())


def resolv_conf(network: str, nameservers: Sequence[str] = ()) -> str:
    """The host's resolver configuration, for a network namespace of its own.

    Without the host's loopback name servers, which are not reachable from there. Given
    ``nameservers`` (a NAT's resolver) replace the host's."""
    text = _read("/etc/resolv.conf") or ""
    if network == HOST and not nameservers:
        return text
    drop = _nameserver if nameservers else _loopback_nameserver
    lines = [line for line in text.splitlines(keepends=True) if not drop(line)]
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(lines) + "".join(f"nameserver {n}\n" for n in nameservers)


def write(
    directory: Path,
    hostname: str,
    network: str,
    extra_hosts: Mapping[str, str],
    nameservers: Sequence[str] = (),
) -> None:
    """Write the three files into ``directory``."""
    contents = (
        hosts(hostname, network, extra_hosts),
        resolv_conf(network, nameservers),
        hostname + "\n",
    )
    for name, text in zip(FILES, contents, strict=True):
        (directory / name).write_text(text)


def _nameserver(line: str) -> bool:
    return line.split()[:1] == ["nameserver"]


def _loopback_nameserver(line: str) -> bool:
    fields = line.split()
    if len(fields) < 2 or fields[0] != "nameserver":
        return False
    try:
        return ipaddress.ip_address(fields[1].split("%")[0]).is_loopback
    except ValueError:
        return False


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return None
