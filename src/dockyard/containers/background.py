"""Working containers running in the background (``dockyard run -d``).

Start, stop, exec into, and read their logs.

Each runs under a *supervisor* of its own, a small dockyard process in a session of its
own (podman's conmon, in Python): started by :func:`start`, it holds the container's
lock, mounts its rootfs, makes its NAT network, runs runc with the output going through
a pipe to ``container.log`` in the container's dir (rotated at a size cap,
:mod:`.logfile`), waits, records the exit code and cleans up
(the overlay, the network, the bundle with its secrets) exactly as a foreground run
does. So a background container is what ``dockyard run`` makes, only nobody waits:

- ``container ls`` shows it running (its lock is held), ``container rm`` and ``prune``
  pass it by, ``dockyard prune`` keeps its snapshots (pinned) and its runc container
  (held by the supervisor, :mod:`dockyard.runtime.container`);
- ``running.json`` in its dir says, while it runs, the supervisor's pid, the runc id
  and the image's ``StopSignal``: what :func:`stop` and :func:`exec_command` need. The
  lock tells a live one from a killed supervisor's (whose runc container the next
  :func:`~dockyard.runtime.container.reap_orphans` ends; whoever locks the container
  next deletes the file).

The job (the container config: its environment may hold secrets) reaches the
supervisor through a pipe, never its command line; the log is created 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import select
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from dockyard.containers import logfile
from dockyard.containers.catalog import RUNNING_FILE, Catalog, WorkingContainer, forget_running
from dockyard.containers.logfile import LogLimits, LogWriter
from dockyard.errors import ContainerError
from dockyard.files import atomic
from dockyard.runtime.config import ContainerConfig
from dockyard.runtime.container import KILL_GRACE, RUNC, RUNC_DIR, kill_all, signal_first

STOP_TIMEOUT = 10.0  # seconds from StopSignal to SIGKILL, as docker's default
_STARTED = b"started\n"


@dataclass(frozen=True)
class Job:
    """What the supervisor runs: ``config`` in the container ``name`` of the store at ``root``.

    On a private NAT network if ``nat``; deleted when it ends if ``remove``; its output logged
    within ``log``."""

    root: str
    name: str
    config: ContainerConfig
    nat: bool
    remove: bool
    stop_signal: int
    log: LogLimits = field(default_factory=LogLimits)


@dataclass(frozen=True)
class Running:
    """``running.json``: a background container while it runs."""

    pid: int  # the supervisor's
    runc_id: str
    stop_signal: int


def start(job: Job) -> None:
    """Start the supervisor of ``job``; return once the container's process runs.

    Raise :class:`ContainerError` (runc's error, say) if it could not be started."""
    supervisor = subprocess.Popen(
        [sys.executable, "-m", __name__],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C and the end of our session do not reach it
        close_fds=True,
    )
    assert supervisor.stdin is not None and supervisor.stdout is not None
    with supervisor.stdin:
        supervisor.stdin.write(pickle.dumps(job))
    with supervisor.stdout:
        answer = supervisor.stdout.read()  # to EOF: it closes its stdout once started
    if answer != _STARTED:
        supervisor.wait()
        message = answer.decode(errors="replace").strip()
        raise ContainerError(message or f"container {job.name}: its supervisor ended at once")


def running(container: WorkingContainer) -> Running | None:
    """How ``container`` runs in the background, None if it does not."""
    try:
        data = json.loads((container.path / RUNNING_FILE).read_bytes())
        found = Running(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise ContainerError(f"{container.path / RUNNING_FILE}: unreadable: {e}") from None
    return found if container.in_use() else None


def stop(catalog: Catalog, container: WorkingContainer, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop ``container``: its image's StopSignal to its first process, then SIGKILL to all.

    SIGKILL after ``timeout`` seconds (at once if that process cannot catch the signal, as a pid
    namespace's init without a handler never sees it). Return once the supervisor has cleaned up;
    False if it was not running."""
    found = running(container)
    if found is None:
        return False
    try:
        pidfd = os.pidfd_open(found.pid)
    except ProcessLookupError:
        return False
    try:
        if not container.in_use():  # it ended: the pid may be another process's now
            return False
        runc_root = catalog.store.root / RUNC_DIR
        if not (
            signal_first(runc_root, found.runc_id, found.stop_signal) and _ended(pidfd, timeout)
        ):
            kill_all(runc_root, found.runc_id)
        if not _ended(pidfd, 2 * KILL_GRACE):
            raise ContainerError(f"container {container.name}: its supervisor did not end")
    finally:
        os.close(pidfd)
    return True


def exec_command(
    catalog: Catalog,
    container: WorkingContainer,
    command: Sequence[str],
    *,
    env: dict[str, str],
    cwd: str | None,
    user: str | None,
    interactive: bool,
    tty: bool,
) -> int:
    """Run ``command`` in the running ``container`` and return its exit code.

    As ``runc exec`` does: in its namespaces, cgroup, seccomp filter, capabilities and environment.
    """
    from dockyard.runtime.users import resolve_in_rootfs

    found = running(container)
    if found is None:
        raise ContainerError(f"container {container.name} is not running in the background")
    args = [RUNC, "--root", str(catalog.store.root / RUNC_DIR), "exec"]
    if tty:
        args.append("--tty")
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    if cwd:
        args += ["--cwd", cwd]
    if user:
        resolved = resolve_in_rootfs(container.merged, user)
        args += ["--user", f"{resolved.uid}:{resolved.gid}"]
        args += [f"--additional-gids={gid}" for gid in resolved.additional_gids]
    args += [found.runc_id, *command]
    stdin = None if interactive or tty else subprocess.DEVNULL
    return subprocess.run(args, stdin=stdin, check=False).returncode


def write_log(container: WorkingContainer, out: BinaryIO, *, follow: bool) -> None:
    """Copy ``container``'s log to ``out``, oldest rotated file first.

    With ``follow``, then what it writes until it stops."""
    logfile.follow(container.path, out, until=lambda: not follow or running(container) is None)


def _ended(pidfd: int, timeout: float) -> bool:
    """Whether the process of ``pidfd`` ends within ``timeout`` seconds."""
    return bool(select.select([pidfd], [], [], timeout)[0])


# -- the supervisor ------------------------------------------------------------------


def _supervise(job: Job, report: Callable[[bytes], bool]) -> None:
    """Run ``job`` (see the module doc); ``report`` tells :func:`start` how it began
    (False once it has: :func:`start` has returned)."""
    from dockyard.containers import rootfs
    from dockyard.runtime.container import Container
    from dockyard.runtime.nat import nat_network
    from dockyard.runtime.snapshots import Snapshots
    from dockyard.store import Store

    store = Store(Path(job.root))
    catalog = Catalog(store)
    with catalog.locked(catalog.get(job.name)) as container, Snapshots(store) as snapshots:
        code: int | None = None
        try:
            with contextlib.ExitStack() as stack:
                merged = stack.enter_context(rootfs.merged(store, snapshots, container))
                config = job.config
                if job.nat:
                    config = stack.enter_context(nat_network()).apply(config)
                log = stack.enter_context(LogWriter(container.path, job.log))
                output, into = os.pipe()
                stack.callback(os.close, output)
                try:
                    process = stack.enter_context(
                        Container(merged, config, root=store.root, stdout=into, stderr=into)
                    )
                finally:
                    os.close(into)  # runc has its copy: the pipe ends when the container does
                process.wait_started()
                stack.callback(forget_running, container)
                state = Running(os.getpid(), process.id, job.stop_signal)
                atomic.write_bytes(
                    container.path / RUNNING_FILE, json.dumps(asdict(state)).encode()
                )
                container.record.command = list(config.args)
                container.record.exit_code = None
                container.save()
                report(_STARTED)
                while chunk := os.read(output, 1 << 16):
                    with contextlib.suppress(OSError):  # a full disk: lost, not stopped
                        log.write(chunk)
                code = process.wait()
        except ContainerError as e:
            if not report(f"dockyard: error: {e}\n".encode()):  # started: into the log
                logfile.append(container.path, job.log, f"dockyard: error: {e}\n".encode())
        finally:
            container.record.exit_code = 125 if code is None else code
            container.save()
            if job.remove:
                catalog.remove(container)


def main() -> None:
    """The supervisor: the job from stdin, ``started`` (or the error) on stdout."""
    job: Job = pickle.loads(sys.stdin.buffer.read())  # from start(), our own parent
    reported = False

    def report(message: bytes) -> bool:
        nonlocal reported
        if reported:
            return False
        reported = True
        os.write(1, message)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)  # start() reads to EOF
        os.close(null)
        return True

    try:
        _supervise(job, report)
    except BaseException as e:
        report(f"dockyard: error: container {job.name}: {e}\n".encode())
        raise SystemExit(125) from None


if __name__ == "__main__":
    main()
