"""Server processes started on a port of their own, without a port race: a free port is
only free when it is chosen, and another process may bind it before the server does."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.waiting import PATIENCE

PORT_TAKEN = b"address already in use"
ATTEMPTS = 3


def free_port() -> int:
    """A port no socket is bound to now: whoever binds it next gets it (see
    :func:`start_listening` and :func:`listens` for waiting on the server that should)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_listening(
    spawn: Callable[[int], subprocess.Popen], log: Path, port: int = 0, timeout: float = PATIENCE
) -> tuple[subprocess.Popen, int]:
    """``spawn(port)`` (a process whose uvicorn logs to ``log``), once it listens: (the
    process, its port).

    Port 0 picks a free port, and picks again if another process bound that one before
    the server did (a free port is only free when it is chosen); a given port is kept.
    Ready is uvicorn's own start-up line for that port in this run's part of ``log``, so
    another process answering on the port is never taken for the server."""
    for _ in range(ATTEMPTS):
        chosen = port or free_port()
        logged = log.stat().st_size if log.exists() else 0
        process = spawn(chosen)
        listening = f"Uvicorn running on http://127.0.0.1:{chosen} ".encode()
        deadline = time.monotonic() + timeout
        while listening not in (said := _since(log, logged)):
            if process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            return process, chosen
        if process.poll() is None:
            process.kill()
        process.wait()
        if port or PORT_TAKEN not in said:
            break
    raise RuntimeError(f"the server did not start on 127.0.0.1:{chosen}:\n{said.decode()[-3000:]}")


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` or a child of it (``git daemon`` runs ``git-daemon``)
    holds a TCP socket listening on ``port`` (their ``/proc`` entries, as root): a server
    is ready, and is not another process that answers on a port it took first."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:  # it has ended
            return False
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    return bool(inodes) and any(inodes & _sockets(p) for p in _tree(pid))


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found, i = [pid], 0
    while i < len(found):
        for task in Path(f"/proc/{found[i]}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                found += [int(child) for child in task.read_text().split()]
        i += 1
    return found


def _sockets(pid: int) -> set[str]:
    """What ``pid``'s file descriptors point at (``socket:[INODE]`` for a socket)."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return set()
    targets = set()
    for fd in fds:
        with contextlib.suppress(OSError):  # closed since it was listed
            targets.add(os.readlink(fd))
    return targets


def wait_listening(process: subprocess.Popen, port: int, timeout: float = PATIENCE) -> bool:
    """Wait until ``process`` listens on ``port``: False if it ended first."""
    deadline = time.monotonic() + timeout
    while not listens(process.pid, port):
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise AssertionError(f"pid {process.pid} did not listen on {port} in {timeout:g}s")
        time.sleep(0.02)
    return True


def _since(log: Path, offset: int) -> bytes:
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""
