"""The OCI runtime spec (runc's ``config.json``) for a :class:`~.config.ContainerConfig`.

Defaults follow docker's: namespaces mount/pid/uts/ipc (and network unless the host's),
``/proc``, a tmpfs ``/dev`` that runc fills with the standard devices (null, zero, full,
random, urandom, tty, ptmx via devpts), ``/dev/shm``, read-only ``/sys``, docker's
default capabilities, its masked and read-only paths, a device cgroup that denies what
runc does not allow by default, ``noNewPrivileges`` off, and a seccomp filter refusing
what docker's default profile refuses and no capability stops (:mod:`.seccomp`).

Deliberately absent: rlimits (the process inherits ours: a limit above the current hard
limit makes runc fail on hosts without CAP_SYS_RESOURCE), ``cgroupsPath`` and resource
limits (runc then makes ``/<id>`` below our own cgroups, which works on cgroup v1, v2
and hybrid hosts without systemd), AppArmor profiles (not yet).
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from dockyard.errors import ContainerError
from dockyard.oci.config import DEFAULT_PATH
from dockyard.runtime import etcfiles, seccomp
from dockyard.runtime.config import HOST, NONE, ContainerConfig, Mount
from dockyard.runtime.users import User

OCI_VERSION = "1.0.2"

CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
"""Docker's default set. Not inheritable nor ambient (CVE-2022-24769): a non-root user
loses them at exec, as in docker."""

MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

UMASK = 0o022


def _mount(destination: str, kind: str, source: str, *options: str) -> dict[str, Any]:
    return {"destination": destination, "type": kind, "source": source, "options": list(options)}


_SYSTEM_MOUNTS = (
    _mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
    _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
    _mount(
        "/dev/pts",
        "devpts",
        "devpts",
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
        "gid=5",
    ),
    _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
    _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
    _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
    _mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
)


def build_spec(
    config: ContainerConfig, *, rootfs: str, user: User, hostname: str, etc_dir: Path
) -> dict[str, Any]:
    """The runtime spec for running ``config`` in ``rootfs`` as ``user``.

    The files of :mod:`.etcfiles` in ``etc_dir`` are bound at ``/etc``."""
    if not config.args:
        raise ContainerError("no command to run")
    caps = [c for c in CAPABILITIES if c not in config.drop_capabilities]
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": config.terminal,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                "umask": UMASK,
                **({"additionalGids": list(user.additional_gids)} if user.additional_gids else {}),
            },
            "args": list(config.args),
            "env": environment(config, user),
            "cwd": _absolute(config.cwd, "working directory"),
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": config.readonly_rootfs},
        "hostname": hostname,
        "mounts": mounts(config, etc_dir),
        "linux": {
            "namespaces": namespaces(config.network),
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": seccomp.profile(),
        },
    }


def environment(config: ContainerConfig, user: User) -> list[str]:
    """``K=V`` strings: the config's, plus docker's defaults where it sets none.

    The defaults are ``PATH`` and ``HOME`` (and ``TERM`` with a terminal)."""
    env = dict(config.env)
    for key in env:
        if not key or "=" in key or "\0" in key + env[key]:
            raise ContainerError(f"invalid environment variable name {key!r}")
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOME", user.home)
    if config.terminal:
        env.setdefault("TERM", "xterm")
    return [f"{key}={value}" for key, value in env.items()]


def namespaces(network: str) -> list[dict[str, str]]:
    """mount, pid, uts, ipc, and network: new (``none``), joined (a path) or the host's."""
    found: list[dict[str, str]] = [{"type": t} for t in ("mount", "pid", "uts", "ipc")]
    if network == NONE:
        found.append({"type": "network"})
    elif network != HOST:
        if not posixpath.isabs(network):
            raise ContainerError(f"network {network!r}: expected host, none or a netns path")
        found.append({"type": "network", "path": network})
    return found


def mounts(config: ContainerConfig, etc_dir: Path) -> list[dict[str, Any]]:
    """System mounts, then the ``/etc`` files and the config's mounts, parents before children.

    A config mount replaces a system mount or ``/etc`` file at its place."""
    extra = [_oci_mount(m) for m in config.mounts]
    taken = {m["destination"] for m in extra}
    etc = [
        _mount(f"/etc/{name}", "bind", str(etc_dir / name), "rbind", "rprivate")
        for name in etcfiles.FILES
    ]
    system = [m for m in _SYSTEM_MOUNTS if m["destination"] not in taken]
    ordered = sorted(
        [m for m in etc if m["destination"] not in taken] + extra,
        key=lambda m: m["destination"].count("/"),
    )
    return [{**m, "options": list(m["options"])} for m in system] + ordered


def _oci_mount(mount: Mount) -> dict[str, Any]:
    destination = _absolute(mount.destination, "mount destination")
    if mount.type == "bind":
        if not posixpath.isabs(mount.source):
            raise ContainerError(f"bind mount source {mount.source!r} is not an absolute path")
        return _mount(
            destination,
            "bind",
            mount.source,
            "rbind",
            "rprivate",
            *(["ro"] if mount.readonly else []),
        )
    if mount.type == "tmpfs":
        options = ["nosuid", "nodev", "mode=1777", *(["ro"] if mount.readonly else [])]
        if mount.size is not None:
            options.append(f"size={mount.size}")
        return _mount(destination, "tmpfs", "tmpfs", *options)
    raise ContainerError(f"unknown mount type {mount.type!r}")


def _absolute(path: str, what: str) -> str:
    if not posixpath.isabs(path):
        raise ContainerError(f"{what} {path!r} is not an absolute path")
    return posixpath.normpath(path)
