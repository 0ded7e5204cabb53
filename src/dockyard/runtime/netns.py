"""Persistent network namespaces: the shared network of a pipeline's services and steps.

:func:`create_netns` makes a namespace that outlives any process: it is bind-mounted on
a file, as ``ip netns add`` does, and containers join it by that path
(``ContainerConfig(network=path)``), so they all reach each other on 127.0.0.1. It has
only a loopback interface, brought up here.

It is made in-process (:func:`in_new_netns`, which :mod:`.nat` uses too): a
short-lived thread calls ``unshare(CLONE_NEWNET)``, which moves only that thread into
the new namespace, brings ``lo`` up through an ioctl on a socket it opens there and
bind-mounts its ``/proc/self/task/TID/ns/net``; the rest of the process never changes
namespace. No ``ip`` binary, no child process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from dockyard.errors import ContainerError
from dockyard.runtime import syscalls

if TYPE_CHECKING:
    import _socket

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: name, then ifr_flags in the union
_T = TypeVar("_T")


def create_netns(path: str | os.PathLike[str]) -> Path:
    """Create a network namespace with loopback up, held by a bind mount at ``path``.

    ``path`` is a new file; its directory must exist. Undo with :func:`remove_netns`."""
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    except OSError as e:
        raise ContainerError(f"cannot create netns file {target}: {e.strerror}") from None
    os.close(fd)
    from dockyard.runtime import mounts  # not at import: see ioctl_socket

    def hold() -> None:
        mounts.bind(f"/proc/self/task/{threading.get_native_id()}/ns/net", target, recursive=False)

    try:
        in_new_netns(hold)
    except BaseException as error:
        remove_netns(target)
        if isinstance(error, ContainerError) or not isinstance(error, Exception):
            raise
        raise ContainerError(f"cannot create network namespace {target}: {error}") from error
    return target


def remove_netns(path: str | os.PathLike[str]) -> None:
    """Unmount and delete a namespace file of :func:`create_netns`; missing is fine.

    The namespace ends when the last container in it exits."""
    from dockyard.runtime import mounts  # not at import: see ioctl_socket

    mounts.unmount(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def netns(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A network namespace at ``path`` for the duration of the block."""
    from dockyard.runtime import interrupts  # not at import: see ioctl_socket

    created = create_netns(path)
    try:
        yield created
    finally:
        with interrupts.deferred():
            remove_netns(created)


def in_new_netns(work: Callable[[], _T]) -> _T:
    """``work()``, called in a new network namespace with loopback up; what it returns or raises.

    It runs in a thread of its own, which ``unshare(CLONE_NEWNET)`` moves alone into
    the namespace and which then exits: ``work`` keeps the namespace (a bind mount, an
    fd) and sets it up. The rest of the process never changes namespace.
    """
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            syscalls.unshare(syscalls.CLONE_NEWNET)
            loopback_up()
            outcome.append((True, work()))
        except BaseException as e:  # raised in the caller's thread
            outcome.append((False, e))

    worker = threading.Thread(target=run, name="dockyard-netns")
    worker.start()
    worker.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return cast(_T, value)


def ioctl_socket() -> contextlib.closing[_socket.socket]:
    """A UDP socket for network ioctls, closed at the end of its ``with`` block.

    From :mod:`_socket`, the C module: :mod:`socket` makes its enums when imported (~10 ms
    here), which a build would pay at its first RUN step for this one socket."""
    import _socket  # not at import: every build loads this module (dockyard.runtime), few use it

    return contextlib.closing(_socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM))


def loopback_up() -> None:
    """Bring ``lo`` up in the calling thread's network namespace."""
    with ioctl_socket() as s:
        request = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))
