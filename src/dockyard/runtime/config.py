"""What to run in a container: the process, its identity, its network and its mounts.

A :class:`ContainerConfig` is plain data, independent of runc; :mod:`.spec` turns it
into an OCI runtime spec and :mod:`.imageconfig` derives one from an image's config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

HOST = "host"
"""``network=HOST``: share the host's network namespace."""

NONE = "none"
"""``network=NONE``: a new network namespace with only a loopback interface."""


@dataclass(frozen=True)
class Mount:
    """An extra mount: a host path, an empty tmpfs or a file of given content.

    A host path bound in (:meth:`bind`), an empty tmpfs (:meth:`tmpfs`) or a file of given content
    (:meth:`file`)."""

    destination: str
    type: Literal["bind", "tmpfs", "file"] = "bind"
    source: str = ""
    readonly: bool = False
    size: int | None = None  # tmpfs only: bytes
    content: bytes = field(default=b"", repr=False)  # file only, and its owner and mode:
    uid: int = 0
    gid: int = 0
    mode: int = 0o400

    @classmethod
    def bind(cls, source: str, destination: str, *, readonly: bool = False) -> Mount:
        """``source`` (a host file or directory, mounts below it included) at ``destination``.

        Cache mounts are binds of a directory in the store."""
        return cls(destination, "bind", source, readonly)

    @classmethod
    def tmpfs(cls, destination: str, *, size: int | None = None) -> Mount:
        """An empty tmpfs (mode 1777) of at most ``size`` bytes at ``destination``."""
        return cls(destination, "tmpfs", size=size)

    @classmethod
    def file(
        cls, content: bytes, destination: str, *, uid: int = 0, gid: int = 0, mode: int = 0o400
    ) -> Mount:
        """A read-only file holding ``content`` (a secret) at ``destination``.

        Owned by ``uid:gid`` with ``mode``; written in the container's private bundle (see
        :mod:`.bundles`), never in the rootfs, and gone with the container."""
        return cls(destination, "file", readonly=True, content=content, uid=uid, gid=gid, mode=mode)


@dataclass(frozen=True)
class ContainerConfig:
    """One process to run in a rootfs, and its surroundings.

    ``network`` is :data:`HOST`, :data:`NONE`, or the path of a network namespace to
    join (see :func:`dockyard.runtime.netns.create_netns`): containers joining one
    namespace reach each other on 127.0.0.1, like the containers of a pod. A
    :class:`dockyard.runtime.nat.NatNetwork` sets it, ``dns`` and
    ``drop_capabilities`` for a private network with outbound NAT.
    ``dns`` are the name servers of ``/etc/resolv.conf`` (default: the host's that the
    network can reach). ``drop_capabilities`` are taken from docker's default set.
    ``user`` is ``uid[:gid]`` or names, resolved in the rootfs; ``groups`` are
    additional groups. ``hosts`` adds ``/etc/hosts`` entries (name -> address).
    """

    args: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    user: str = ""
    groups: Sequence[str] = ()
    hostname: str | None = None  # default: the container id's short form
    network: str = NONE
    mounts: Sequence[Mount] = ()
    hosts: Mapping[str, str] = field(default_factory=dict)
    dns: Sequence[str] = ()
    drop_capabilities: Sequence[str] = ()
    terminal: bool = False
    readonly_rootfs: bool = False
