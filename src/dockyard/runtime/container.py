"""Running one process in an isolated rootfs with runc.

:func:`run` is the common case: run, stream the output, return the exit code. A
:class:`Container` is the same thing in steps, for containers that run alongside
others (a pipeline's services): :meth:`~Container.start`, :meth:`~Container.wait`,
:meth:`~Container.kill`, and :meth:`~Container.close`, which its ``with`` block calls.

runc runs in the foreground (``runc run``), as our child: it sets the container up,
waits for the process and removes the container's state and cgroups when it exits,
and its exit status is the container's (128 + N after signal N). Its own failures are
told apart from the command's through its JSON log (``--log``). Its state lives in
``<store root>/runc`` (``--root``), so other runc users never see our containers; the
bundle (``config.json``, the ``/etc`` files, runc's ``--pid-file``) in
``<store root>/bundles/<id>``.

Stopping is ``runc kill --all ID KILL``: every process of the container's pid namespace
and cgroup, so a timeout ends the whole tree (:meth:`~Container.send_signal` may first
ask the first process to end, as ``docker stop`` does). Cleanup is safe to repeat and
runs on success, failure, timeout and Ctrl-C: kill what runs, ``runc delete --force``
if runc left state behind, remove the mount stubs runc made in the rootfs, delete the
bundle. A :class:`ContainerGroup` kills, from any thread, the containers that code
started out of the caller's sight (a build's RUN steps, for a cancelled pipeline).

A process killed outright (SIGKILL, the OOM killer) cleans nothing up, and runc, in a
session of its own, keeps the container running. So every container is *held* by the
process that started it (:mod:`dockyard.store.holds`, in ``<store root>/containers``,
taken before its bundle exists); :func:`reap_orphans` kills and deletes the containers
nobody holds, and their bundles. ``dockyard prune`` runs it, and so does every process
before it starts its first container in a store: a bundle holds secrets (the process's
environment, secret files; see :mod:`.bundles`), so none outlives a crash for long.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import os
import selectors
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from dockyard.errors import ContainerError
from dockyard.runtime import bundles, etcfiles, interrupts
from dockyard.runtime.config import HOST, ContainerConfig
from dockyard.runtime.inroot import MountStubs
from dockyard.runtime.spec import build_spec
from dockyard.runtime.users import resolve_in_rootfs
from dockyard.store.holds import Hold, held_names

RUNC = "runc"
RUNC_DIR = "runc"
BUNDLES_DIR = "bundles"
HOLDS_DIR = "container-holds"
PID_FILE = "init.pid"  # in the bundle: the first process's pid (runc run --pid-file)
KILL_GRACE = 10.0  # seconds to wait for the container to go after SIGKILL

OutputCallback = Callable[[str, bytes], None]
"""Receives ``("stdout" | "stderr", chunk)`` as output arrives (from a reader thread)."""

File = int | IO[bytes] | IO[str] | None


class ContainerTimeout(ContainerError):
    """The process outlived its timeout; the whole container has been killed."""

    def __init__(self, container_id: str, timeout: float):
        super().__init__(f"container {container_id} timed out after {timeout:g}s and was killed")
        self.timeout = timeout


_holds: dict[Path, Hold] = {}  # this process's: a forked child takes its own
_holds_lock = threading.Lock()
os.register_at_fork(after_in_child=_holds.clear)


def _owner_hold(root: Path) -> Hold:
    """This process's hold on the containers it starts under the store ``root``."""
    with _holds_lock:
        return _holds.setdefault(root, Hold(root / HOLDS_DIR))


def reap_orphans(root: str | os.PathLike[str]) -> list[str]:
    """Kill and delete the orphaned containers under the store ``root``; return their ids.

    Orphaned: their starting process died without cleaning up (their hold is gone)."""
    root = Path(root)
    runc_root = root / RUNC_DIR
    found: set[str] = set()
    for directory in (root / BUNDLES_DIR, runc_root):
        with contextlib.suppress(FileNotFoundError):
            found.update(e.name for e in os.scandir(directory) if e.name.startswith("dockyard-"))
    orphans = found - held_names(root / HOLDS_DIR)  # read after listing: see the module doc
    for container_id in sorted(orphans):
        for command in (
            ["kill", "--all", container_id, "KILL"],
            ["delete", "--force", container_id],
        ):
            subprocess.run(
                [RUNC, "--root", str(runc_root), *command],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
            )
        shutil.rmtree(root / BUNDLES_DIR / container_id, ignore_errors=True)
    return sorted(orphans)


_reaped: set[Path] = set()  # the store roots this process has reaped
_reaped_lock = threading.Lock()


def _reap_once(root: Path) -> None:
    """Reap the orphans under the store ``root`` if this process has not yet: a crashed
    dockyard's containers and bundles (secrets in them) go at the next start."""
    with _reaped_lock:
        if root in _reaped:
            return
        reap_orphans(root)
        _reaped.add(root)


def new_id() -> str:
    """A fresh container id: ``dockyard-`` and 12 random hex digits."""
    return f"dockyard-{os.urandom(6).hex()}"


def run(
    rootfs: str | os.PathLike[str],
    config: ContainerConfig,
    *,
    root: str | os.PathLike[str],
    timeout: float | None = None,
    on_output: OutputCallback | None = None,
    stdin: File = None,
    stdout: File = None,
    stderr: File = None,
    container_id: str | None = None,
) -> int:
    """Run ``config`` in ``rootfs`` and return its exit code.

    ``root`` is the store root (runc's state and the bundle go below it). Output goes to
    ``on_output`` if given, else to ``stdout``/``stderr`` (default: ours); stdin is
    ``/dev/null`` unless given. After ``timeout`` seconds every process of the
    container is killed and :class:`ContainerTimeout` raised. Nothing is left behind.
    ``container_id`` defaults to :func:`new_id`.
    """
    with Container(
        rootfs,
        config,
        root=root,
        on_output=on_output,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        container_id=container_id,
        output_thread=False,  # waited for at once: wait() reads the output
    ) as container:
        return container.wait(timeout)


class Container:
    """One container: a process in ``rootfs`` as ``config`` describes, run by runc.

    ``with Container(...) as c:`` starts it and always cleans up; see :func:`run` for
    the arguments. The rootfs must stay mounted until :meth:`close` has returned.
    ``on_output`` is called from a thread that reads the output from the start; with
    ``output_thread=False``, from :meth:`wait`, in its caller's thread (one thread less to
    start, ~1-4 ms here): only for a caller that waits as soon as it has started it.
    """

    def __init__(
        self,
        rootfs: str | os.PathLike[str],
        config: ContainerConfig,
        *,
        root: str | os.PathLike[str],
        on_output: OutputCallback | None = None,
        stdin: File = None,
        stdout: File = None,
        stderr: File = None,
        container_id: str | None = None,
        output_thread: bool = True,
    ):
        if on_output is not None and config.terminal:
            raise ContainerError("a terminal's output cannot go to a callback")
        self.id = container_id or new_id()
        self.rootfs = os.path.abspath(rootfs)
        self.config = config
        self.runc_root = Path(root) / RUNC_DIR
        self.bundle = Path(root) / BUNDLES_DIR / self.id
        self._owner = _owner_hold(Path(root))
        self._on_output = on_output
        self._stdio = (stdin, stdout, stderr)
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._output_thread = output_thread
        self._reader_error: BaseException | None = None
        self._stubs: MountStubs | None = None
        self._group = _GROUP.get()
        self._closed = False

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The pid of the runc process that runs the container (None before start)."""
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Write the bundle and start the container; return once runc is running.

        If this fails (or is interrupted), everything it made is removed again.
        """
        if self._process is not None or self._closed:
            raise ContainerError(f"container {self.id} was already started")
        try:
            # Ctrl-C waits until runc is ours to kill: close() then stops it.
            with interrupts.deferred():
                self._start()
                if self._group is not None:
                    self._group._join(self)  # once there is a process to kill
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        config = self.config
        user = resolve_in_rootfs(self.rootfs, config.user, config.groups)
        hostname = config.hostname or (
            os.uname().nodename if config.network == HOST else self.id.rpartition("-")[2]
        )
        _reap_once(self.runc_root.parent)  # what a killed dockyard left: secrets too
        self._owner.add([self.id])  # before anything a reaper could find
        bundles.create(self.bundle)  # private: it holds secrets (see bundles)
        bundles.write_private(self.bundle / "runc.log", b"")  # runc would make it 0644
        etcfiles.write(self.bundle, hostname, config.network, config.hosts, config.dns)
        config = dataclasses.replace(config, mounts=bundles.stage_files(self.bundle, config.mounts))
        spec = build_spec(
            config, rootfs=self.rootfs, user=user, hostname=hostname, etc_dir=self.bundle
        )
        bundles.write_private(self.bundle / "config.json", json.dumps(spec).encode())
        self._stubs = MountStubs.find(self.rootfs, _rootfs_destinations(spec["mounts"]))
        self.runc_root.mkdir(parents=True, exist_ok=True)
        stdin, stdout, stderr = self._stdio
        piped = self._on_output is not None
        self._process = subprocess.Popen(
            [
                *self._runc("--log", str(self.bundle / "runc.log"), "--log-format", "json"),
                "run",
                "--bundle",
                str(self.bundle),
                "--pid-file",
                str(self.bundle / PID_FILE),
                self.id,
            ],
            stdin=stdin if stdin is not None or config.terminal else subprocess.DEVNULL,
            stdout=subprocess.PIPE if piped else stdout,
            stderr=subprocess.PIPE if piped else stderr,
            # A terminal needs the caller's session; otherwise Ctrl-C reaches us alone
            # and we stop the container (runc would forward SIGINT, which pid 1 ignores).
            start_new_session=not config.terminal,
        )
        if piped and self._output_thread:
            self._reader = threading.Thread(
                target=self._pump, name=f"{self.id}-output", daemon=True
            )
            self._reader.start()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit and return its exit code.

        After ``timeout`` seconds, kill the whole container and raise
        :class:`ContainerTimeout`. Raise :class:`ContainerError` if runc itself failed
        (the command could not be started, say).
        """
        process = self._started()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if self._on_output is not None and self._reader is None:
                self._pump(deadline)  # output_thread=False: read here until both pipes end
            code = process.wait(None if deadline is None else max(0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise ContainerTimeout(self.id, timeout or 0) from None
        self._join_reader()
        if self._reader_error is not None:
            raise self._reader_error
        if code != 0 and (message := self._runc_error()):
            raise ContainerError(f"container {self.id}: {message}")
        return 128 - code if code < 0 else code

    def send_signal(self, signum: int) -> bool:
        """Send ``signum`` to the container's first process only, as ``docker stop`` does.

        ``docker stop`` does so before it kills. False if it cannot arrive: the container has ended,
        or its first process, the init of its pid namespace, has no handler for the signal (the
        kernel drops such signals to an init), so waiting for it to act is futile.
        """
        if self._started().poll() is not None:
            return False
        try:  # runc writes it once the process exists: what ``runc state`` would ask it
            pid = int((self.bundle / PID_FILE).read_text())
        except (OSError, ValueError):
            return False  # not started yet, so no handler yet
        if pid <= 0 or not _catches(pid, signum):
            return False
        self._runc_quiet("kill", self.id, str(signum))
        return True

    def wait_started(self) -> None:
        """Return once runc says the process runs, or has ended (:meth:`wait` then tells how).

        Raise :class:`ContainerError` with runc's error if it could not start (no such command,
        say). For a container nobody watches (``run -d``)."""
        process = self._started()
        while process.poll() is None:
            if _state(self.runc_root, self.id).get("status") == "running":
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(0.01)
        if process.returncode != 0 and (message := self._runc_error()):
            raise ContainerError(f"container {self.id}: {message}")

    def kill(self) -> None:
        """SIGKILL every process in the container and wait until runc has gone."""
        process = self._started()
        deadline = time.monotonic() + KILL_GRACE
        while process.poll() is None:
            if self._state_exists():
                self._runc_quiet("kill", "--all", self.id, "KILL")
            try:
                process.wait(0.05)
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    process.kill()  # runc itself is stuck
                    process.wait()
        if self._state_exists():  # runc died without cleaning up: its processes may live on
            self._runc_quiet("delete", "--force", self.id)
        self._join_reader()

    def close(self) -> None:
        """Stop the container if it runs and remove everything it left; idempotent."""
        if self._closed:
            return
        with interrupts.deferred():
            if self._group is not None:
                self._group._leave(self)
            try:
                if self._process is not None:
                    self.kill()
                    for stream in (self._process.stdout, self._process.stderr):
                        if stream is not None:
                            stream.close()
                if self._stubs is not None:
                    self._stubs.remove()
            finally:
                shutil.rmtree(self.bundle, ignore_errors=True)
                self._closed = True

    # -- internals ----------------------------------------------------------------

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise ContainerError(f"container {self.id} has not been started")
        return self._process

    def _runc(self, *args: str) -> list[str]:
        return [RUNC, "--root", str(self.runc_root), *args]

    def _runc_quiet(self, *args: str) -> None:
        _runc_quiet(self.runc_root, *args)

    def _state_exists(self) -> bool:
        return (self.runc_root / self.id).exists()

    def _runc_error(self) -> str | None:
        """The last error runc logged about itself, if any."""
        try:
            lines = (self.bundle / "runc.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return None
        errors = []
        for line in lines:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    errors.append(str(entry.get("msg", "")))
        return errors[-1] if errors else None

    def _pump(self, deadline: float | None = None) -> None:
        """Hand each chunk of output to the callback until both pipes end.

        In the reader thread, or in :meth:`wait` (``output_thread=False``), which gives its
        ``deadline`` (a :func:`time.monotonic` time): past it, ``TimeoutExpired``. If the
        callback raises, the container is killed and the error re-raised by :meth:`wait`;
        the rest of the output is drained and dropped.
        """
        process = self._started()
        assert self._on_output is not None
        with selectors.DefaultSelector() as selector:
            for name, stream in (("stdout", process.stdout), ("stderr", process.stderr)):
                assert stream is not None
                selector.register(stream, selectors.EVENT_READ, name)
            while selector.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(process.args, 0)
                for key, _ in selector.select(left):
                    data = os.read(key.fd, 1 << 16)
                    if not data:
                        selector.unregister(key.fileobj)
                    elif self._reader_error is None:
                        try:
                            self._on_output(key.data, data)
                        except BaseException as e:
                            self._reader_error = e
                            self._runc_quiet("kill", "--all", self.id, "KILL")

    def _join_reader(self) -> None:
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join()


class ContainerGroup:
    """The containers started while the group is :meth:`active`, to be killed at once.

    Killed from another thread: the way to stop a job that starts containers out of sight (a build's
    RUN steps) without waiting for it to look up.

    A container belongs to the group active in the context it is made in: its thread's,
    or a copy of it (``contextvars.copy_context``). Once killed, the group lets no
    container start (:class:`ContainerError`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[Container] = set()
        self._killed = False

    @contextlib.contextmanager
    def active(self) -> Iterator[ContainerGroup]:
        """Containers made in the block belong to this group."""
        token = _GROUP.set(self)
        try:
            yield self
        finally:
            _GROUP.reset(token)

    def kill(self) -> None:
        """Kill every running container of the group; none starts from now on."""
        with self._lock:
            self._killed = True
            live = list(self._live)
        for container in live:
            with contextlib.suppress(ContainerError):  # it may be ending by itself
                container.kill()

    def _join(self, container: Container) -> None:
        with self._lock:
            if self._killed:
                raise ContainerError(f"container {container.id} killed at its start with its group")
            self._live.add(container)

    def _leave(self, container: Container) -> None:
        with self._lock:
            self._live.discard(container)


_GROUP: contextvars.ContextVar[ContainerGroup | None] = contextvars.ContextVar(
    "dockyard_container_group", default=None
)


def signal_first(runc_root: Path, container_id: str, signum: int) -> bool:
    """Send ``signum`` to the first process of the running container ``container_id``.

    runc state is in ``runc_root``. Sent only if it can arrive: see :meth:`Container.send_signal`.
    """
    pid = _state(runc_root, container_id).get("pid")
    if not isinstance(pid, int) or pid <= 0 or not _catches(pid, signum):
        return False
    _runc_quiet(runc_root, "kill", container_id, str(signum))
    return True


def kill_all(runc_root: Path, container_id: str) -> None:
    """SIGKILL every process of the container ``container_id``.

    Whoever runs its runc (:class:`Container`) then cleans up."""
    _runc_quiet(runc_root, "kill", "--all", container_id, "KILL")


def _state(runc_root: Path, container_id: str) -> dict[str, object]:
    """``runc state`` of a container (``status``, ``pid``...); empty if it has none."""
    state = subprocess.run(
        [RUNC, "--root", str(runc_root), "state", container_id],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    try:
        found = json.loads(state.stdout) if state.returncode == 0 else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _runc_quiet(runc_root: Path, *args: str) -> None:
    """Run a runc command whose failure (the container is already gone) is fine."""
    subprocess.run(
        [RUNC, "--root", str(runc_root), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (``SigCgt`` in its status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _rootfs_destinations(mounts: Iterable[dict[str, object]]) -> list[str]:
    """Mount destinations that are in the rootfs itself, not inside another mount."""
    destinations = [str(m["destination"]) for m in mounts]
    return [
        d
        for d in destinations
        if not any(d != other and d.startswith(other.rstrip("/") + "/") for other in destinations)
    ]
