"""Services: containers started before the steps that use them.

They are checked for readiness, and stopped at the end.

The pipeline's services start with the run, in its network namespace; a step waits
only for those it uses (:meth:`Services.settled`), all of them unless it names some. A
step's own services start for it, in a network of its own, and stop after it (see
:mod:`.steps`). Each service is named by its service name in the ``/etc/hosts`` of the
containers of its network. Readiness is checked for all services at once:

- ``tcp: PORT``: a connection to ``127.0.0.1:PORT`` in the namespace succeeds (tried
  from a thread of this process that joins the namespace, see :mod:`.probe`);
- ``command: [...]``: the command exits 0 in a container of the service's image, in
  the namespace, tried again until the timeout.

A service that cannot start, exits before it is ready, or is not ready in time has
failed (:attr:`Services.failures`): the steps that use it do not run, the run fails
(its ``when: status: [failure]`` steps still run, see :mod:`.runner`). One not ready in
time is killed there and then, not asked to stop. A service that exits later is only
noted. A service's environment is the steps' variables, its ``environment`` and its
``secrets``. :attr:`Services.timings` says how long each took to pull and to get ready.

:meth:`Services.close` stops the services as ``docker stop`` does, all at once: the
image's ``StopSignal`` (default SIGTERM) to each service's first process, then, for
those still running after their ``stop_timeout`` (default 10s), SIGKILL to every
process. So a service can flush and clean up. A first process with no handler for the
signal never gets it (it is its pid namespace's init), so it is killed at once rather
than waited for in vain. Then every rootfs is removed, whatever happened (Ctrl-C too).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

from dockyard.ci.cancel import Cancelled
from dockyard.ci.context import RunContext
from dockyard.ci.images import Image
from dockyard.ci.output import OutputLog
from dockyard.ci.pipeline import Ready, Service
from dockyard.errors import ContainerError, DockyardError
from dockyard.oci.config import ImageConfig
from dockyard.runtime import Container, ContainerTimeout, container_config, interrupts
from dockyard.runtime.imageconfig import parse_signal, signal_name

RETRY_INTERVAL = 0.2  # seconds between readiness commands


class ServiceError(DockyardError):
    """A service could not be started or did not become ready."""


@dataclass
class _Running:
    """A started service."""

    name: str
    spec: Service
    image: Image
    log: OutputLog
    container: Container
    stop_signal: int
    exited: threading.Event = field(default_factory=threading.Event)
    ended: str = ""  # how it ended: "with code N", or runc's error
    killed: bool = False  # at once, as it failed its readiness check


class Services:
    """Services of a run or a step; use as a context manager, which stops them on exit.

    ``label`` prefixes their names in logs (a step's, whose service names may be
    another step's too)."""

    def __init__(
        self,
        ctx: RunContext,
        env: Mapping[str, str],
        specs: Mapping[str, Service],
        *,
        label: str = "",
    ):
        self.ctx = ctx
        self.env = env
        self.specs = specs
        self.label = label
        # Both replaced, never changed, as threads learn more: a reader (the run's
        # record) may iterate over what it got while they do.
        self.failures: dict[str, str] = {}  # name -> what went wrong
        self.timings: dict[str, dict[str, float]] = {n: {} for n in specs}  # pull, ready
        self._lock = threading.Lock()
        self._settled = {name: Future[None]() for name in specs}  # done: ready or failed
        self._running: list[_Running] = []
        self._checks: list[threading.Event] = []  # set when a readiness check has ended
        self._stack = contextlib.ExitStack()
        self._stopping = False

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start every service, then wait until all are ready.

        Raise :class:`ServiceError` if any failed."""
        self.launch()
        wait(self._settled.values())  # a cancel ends the checks at once
        self.ctx.cancel.check()
        if self.failures:
            raise ServiceError(self.failure_of(self.specs))

    def launch(self) -> None:
        """Start every service (pulling images as needed) and check each for readiness.

        Readiness is checked in the background: :meth:`settled` says when."""
        for name, spec in self.specs.items():
            try:
                service = self._start(name, spec)
            except ServiceError as e:
                self._fail(name, str(e))
                continue
            if spec.ready is None:
                self._settled[name].set_result(None)
            else:
                self._spawn_check(service)

    def settled(self, names: Iterable[str]) -> list[Future[None]]:
        """For each service of ``names``: done once it is ready or has failed."""
        return [self._settled[name] for name in names]

    def failure_of(self, names: Iterable[str]) -> str:
        """What went wrong with the services of ``names``, in the order of the file.

        "" if nothing."""
        wanted = set(names)
        return "; ".join(m for name, m in self.failures.items() if name in wanted)

    def _fail(self, name: str, message: str) -> None:
        with self._lock:
            failures = {**self.failures, name: message}
            self.failures = {n: failures[n] for n in self.specs if n in failures}
        if not self._settled[name].done():
            self._settled[name].set_result(None)

    def _timed(self, name: str, what: str, seconds: float) -> None:
        with self._lock:
            self.timings[name] = {**self.timings[name], what: seconds}

    def close(self) -> None:
        """Stop every service and remove what it used; safe to call again."""
        with interrupts.deferred():
            self._stopping = True
            for done in self._checks:
                done.wait()  # readiness checks end quickly once the run is cancelled
            try:
                self._stop()
            finally:
                self._stack.close()

    # -- starting ----------------------------------------------------------------------

    def _start(self, name: str, spec: Service) -> _Running:
        source = self.label + name
        log = OutputLog(source, self.ctx.run.service_log(source), self.ctx.masked, self.ctx.events)
        self._stack.callback(log.close)
        started = time.monotonic()
        try:
            image = self.ctx.images.get(spec.image, log.note)
        except DockyardError as e:
            raise ServiceError(f"service {name}: {e}") from None
        finally:
            self._timed(name, "pull", time.monotonic() - started)
        stop = ImageConfig(image.config).stop_signal or "SIGTERM"
        try:
            stop_signal = parse_signal(stop)
        except ValueError as e:
            raise ServiceError(f"service {name}: image StopSignal: {e}") from None
        with interrupts.deferred():  # no Ctrl-C between a mount and its cleanup's registration
            rootfs = self._stack.enter_context(self.ctx.images.rootfs(image))
        config = container_config(
            image.config,
            args=spec.command,
            env=self._env(spec),
            base=self.ctx.base_config(name),
        )
        container = Container(rootfs, config, root=self.ctx.store.root, on_output=log)
        service = _Running(name, spec, image, log, container, stop_signal)
        watcher = threading.Thread(target=self._watch, args=(service,), name=f"svc-{name}")
        self._stack.callback(lambda: watcher.join() if watcher.is_alive() else None)
        self.ctx.cancel.check()
        try:
            with interrupts.deferred():
                self._stack.enter_context(container)
                watcher.start()
                self._running.append(service)
        except ContainerError as e:
            raise ServiceError(f"service {name}: {e}") from None
        log.note(f"started {spec.image}")
        return service

    def _env(self, spec: Service) -> dict[str, str]:
        return {**self.env, **spec.environment, **{n: self.ctx.secrets[n] for n in spec.secrets}}

    def _watch(self, service: _Running) -> None:
        """Waits for the service to exit (it is killed at the end of the run)."""
        try:
            service.ended = f"with code {service.container.wait()}"
        except ContainerError as e:
            service.ended = f"({e})"
        finally:
            service.exited.set()
        if not self._stopping:
            service.log.note(f"exited {service.ended}")

    # -- stopping ----------------------------------------------------------------------

    def _stop(self) -> None:
        """Ask every running service to stop; kill those that cannot hear the signal at
        once, and those that do not stop by their timeout then."""
        started = time.monotonic()
        asked = {
            service.name: service.container.send_signal(service.stop_signal)
            for service in self._running
            if not service.exited.is_set() and not service.killed
        }
        for service in self._running:
            if service.name not in asked:
                continue
            name = signal_name(service.stop_signal)
            deadline = started + service.spec.stop_timeout
            if not asked[service.name]:
                service.container.kill()
                service.log.note(f"killed: its first process has no handler for {name}")
            elif service.exited.wait(max(0.0, deadline - time.monotonic())):
                service.log.note(f"stopped by {name}: exited {service.ended}")
            else:
                service.container.kill()
                service.log.note(
                    f"killed: still running {service.spec.stop_timeout:g}s after {name}"
                )

    # -- readiness ---------------------------------------------------------------------

    def _spawn_check(self, service: _Running) -> None:
        """Check ``service`` in a thread of its own.

        Its end is awaited through an event, not ``Thread.join``: on Python 3.11 a join
        interrupted by Ctrl-C can mark a running thread as stopped (bpo-45274's fix
        releases the thread's own lock), and nothing would then wait for its cleanup.
        """
        done = threading.Event()

        def check() -> None:
            try:
                self._check(service)
            finally:
                done.set()
                settled = self._settled[service.name]
                if not settled.done():
                    settled.set_result(None)

        self._checks.append(done)
        threading.Thread(target=check, name=f"ready-{service.name}").start()

    def _check(self, service: _Running) -> None:
        ready = service.spec.ready
        assert ready is not None
        started = time.monotonic()
        deadline = started + ready.timeout
        try:
            if ready.tcp is not None:
                from dockyard.ci.probe import wait_for_tcp  # ctypes, libc: only for TCP checks

                ok = wait_for_tcp(
                    self.ctx.netns,
                    ready.tcp,
                    deadline,
                    lambda: service.exited.is_set() or self._given_up,
                )
            else:
                ok = self._command_check(service, ready, deadline)
        except Cancelled:
            return
        except (DockyardError, OSError) as e:
            self._fail(service.name, f"service {service.name}: readiness check failed: {e}")
            return
        if ok and not service.exited.is_set():
            self._timed(service.name, "ready", time.monotonic() - started)
            service.log.note(f"ready after {time.monotonic() - started:.1f}s")
        elif self._given_up:
            return
        elif service.exited.is_set():
            self._fail(
                service.name, f"service {service.name} exited {service.ended} before it was ready"
            )
        else:
            self._fail(service.name, f"service {service.name} not ready after {ready.timeout:g}s")
            service.killed = True
            service.container.kill()
            service.log.note("killed: not ready in time")

    def _command_check(self, service: _Running, ready: Ready, deadline: float) -> bool:
        """Run the ready command in the service's image until it exits 0."""
        assert ready.command is not None
        config = container_config(
            service.image.config,
            args=ready.command,
            entrypoint="",
            env=self._env(service.spec),
            base=self.ctx.base_config(f"{service.name}-ready"),
        )
        with self.ctx.images.rootfs(service.image) as rootfs:
            while not service.exited.is_set() and not self._given_up:
                remaining = deadline - time.monotonic()
                try:
                    code = self.ctx.cancel.run(
                        rootfs,
                        config,
                        root=self.ctx.store.root,
                        timeout=max(remaining, 0.1),
                        on_output=_discard,
                    )
                except ContainerTimeout:
                    return False
                if code == 0:
                    return True
                if time.monotonic() + RETRY_INTERVAL > deadline:
                    return False
                if self.ctx.cancel.wait(RETRY_INTERVAL):
                    raise Cancelled
        return False

    @property
    def _given_up(self) -> bool:
        """Whether readiness checks are pointless now: the run was cancelled, or the
        services are being stopped (those nobody waited for included)."""
        return self.ctx.cancel.cancelled or self._stopping


def _discard(stream: str, data: bytes) -> None:
    """Readiness commands speak through their exit code only."""
