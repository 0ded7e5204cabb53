"""Persistent network namespaces: the shared network of a pipeline's services and steps.

:func:`create_netns` makes a namespace that outlives any process: it is bind-mounted on
a file, as ``ip netns add`` does, and containers join it by that path
(``ContainerConfig(network=path)``), so they all reach each other on 127.0.0.1. It has
only a loopback interface, brought up here.

It is made in-process: a short-lived thread calls ``unshare(CLONE_NEWNET)``, which
moves only that thread into the new namespace, bind-mounts its ``/proc/self/task/TID/
ns/net`` and brings ``lo`` up through an ioctl on a socket it opens there; the rest of
the process never changes namespace. No ``ip`` binary, no child process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

from dockyard.errors import ContainerError
from dockyard.runtime import interrupts, mounts, syscalls

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: name, then ifr_flags in the union


def create_netns(path: str | os.PathLike[str]) -> Path:
    """Create a network namespace with loopback up, held by a bind mount at ``path``
    (a new file; its directory must exist). Undo with :func:`remove_netns`."""
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    except OSError as e:
        raise ContainerError(f"cannot create netns file {target}: {e.strerror}") from None
    os.close(fd)
    failure: list[BaseException] = []
    worker = threading.Thread(target=_make, args=(target, failure), name="dockyard-netns")
    worker.start()
    worker.join()
    if failure:
        remove_netns(target)
        error = failure[0]
        if isinstance(error, ContainerError):
            raise error
        raise ContainerError(f"cannot create network namespace {target}: {error}") from error
    return target


def remove_netns(path: str | os.PathLike[str]) -> None:
    """Unmount and delete a namespace file of :func:`create_netns`; the namespace ends
    when the last container in it exits. Missing is fine."""
    mounts.unmount(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def netns(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A network namespace at ``path`` for the duration of the block."""
    created = create_netns(path)
    try:
        yield created
    finally:
        with interrupts.deferred():
            remove_netns(created)


def _make(target: Path, failure: list[BaseException]) -> None:
    """Runs in its own thread, which it leaves in the new namespace: it then exits."""
    try:
        syscalls.unshare(syscalls.CLONE_NEWNET)
        mounts.bind(f"/proc/self/task/{threading.get_native_id()}/ns/net", target, recursive=False)
        loopback_up()
    except BaseException as e:  # reported to the caller's thread
        failure.append(e)


def loopback_up() -> None:
    """Bring ``lo`` up in the calling thread's network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))
