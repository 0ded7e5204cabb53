"""A run's services: started before the steps, checked for readiness, stopped at the end.

Each service is a container in the run's network namespace, named by its service name
in every container's ``/etc/hosts``. Readiness is checked for all services at once:

- ``tcp: PORT``: a connection to ``127.0.0.1:PORT`` in the namespace succeeds (tried
  from a thread of this process that joins the namespace, see :mod:`.probe`);
- ``command: [...]``: the command exits 0 in a container of the service's image, in
  the namespace, tried again until the timeout.

A service that exits before it is ready, or is not ready in time, fails the run (its
``when: status: [failure]`` steps still run, see :mod:`.runner`); one not ready in time
is killed there and then, not asked to stop. A service that exits later is only noted.

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
from collections.abc import Mapping
from dataclasses import dataclass, field

from dockyard.ci import probe
from dockyard.ci.cancel import Cancelled
from dockyard.ci.context import RunContext
from dockyard.ci.images import Image
from dockyard.ci.output import OutputLog
from dockyard.ci.pipeline import Ready, Service
from dockyard.errors import ContainerError, DockyardError
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
    """The services of one run; use as a context manager, which stops them on exit."""

    def __init__(self, ctx: RunContext, env: Mapping[str, str], specs: Mapping[str, Service]):
        self.ctx = ctx
        self.env = env
        self.specs = specs
        self._running: list[_Running] = []
        self._checks: list[threading.Event] = []  # set when a readiness check has ended
        self._stack = contextlib.ExitStack()
        self._stopping = False

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start every service (pulling images as needed), then wait until all are ready."""
        for name, spec in self.specs.items():
            self._start(name, spec)
        failures: list[str] = []
        for service in self._running:
            if service.spec.ready is not None:
                self._spawn_check(service, failures)
        for done in self._checks:
            done.wait()
        self.ctx.cancel.check()
        if failures:
            raise ServiceError("; ".join(failures))

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

    def _start(self, name: str, spec: Service) -> None:
        log = OutputLog(name, self.ctx.run.service_log(name), self.ctx.masked, self.ctx.events)
        self._stack.callback(log.close)
        try:
            image = self.ctx.images.get(spec.image, log.note)
        except DockyardError as e:
            raise ServiceError(f"service {name}: {e}") from None
        stop = (image.config.get("config") or {}).get("StopSignal") or "SIGTERM"
        try:
            stop_signal = parse_signal(stop)
        except ValueError as e:
            raise ServiceError(f"service {name}: image StopSignal: {e}") from None
        with interrupts.deferred():  # no Ctrl-C between a mount and its cleanup's registration
            rootfs = self._stack.enter_context(self.ctx.images.rootfs(image))
        config = container_config(
            image.config,
            args=spec.command,
            env={**self.env, **spec.environment},
            base=self.ctx.base_config(name),
        )
        container = Container(rootfs, config, root=self.ctx.store.root, on_output=log)
        service = _Running(name, spec, image, log, container, stop_signal)
        watcher = threading.Thread(target=self._watch, args=(service,), name=f"svc-{name}")
        self._stack.callback(lambda: watcher.is_alive() and watcher.join())
        self.ctx.cancel.check()
        try:
            with interrupts.deferred():
                self._stack.enter_context(container)
                watcher.start()
                self._running.append(service)
        except ContainerError as e:
            raise ServiceError(f"service {name}: {e}") from None
        log.note(f"started {spec.image}")

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

    def _spawn_check(self, service: _Running, failures: list[str]) -> None:
        """Check ``service`` in a thread of its own.

        Its end is awaited through an event, not ``Thread.join``: on Python 3.11 a join
        interrupted by Ctrl-C can mark a running thread as stopped (bpo-45274's fix
        releases the thread's own lock), and nothing would then wait for its cleanup.
        """
        done = threading.Event()

        def check() -> None:
            try:
                self._check(service, failures)
            finally:
                done.set()

        self._checks.append(done)
        threading.Thread(target=check, name=f"ready-{service.name}").start()

    def _check(self, service: _Running, failures: list[str]) -> None:
        ready = service.spec.ready
        assert ready is not None
        started = time.monotonic()
        deadline = started + ready.timeout
        try:
            if ready.tcp is not None:
                ok = probe.wait_for_tcp(
                    self.ctx.netns,
                    ready.tcp,
                    deadline,
                    lambda: service.exited.is_set() or self.ctx.cancel.cancelled,
                )
            else:
                ok = self._command_check(service, ready, deadline)
        except Cancelled:
            return
        except (DockyardError, OSError) as e:
            failures.append(f"service {service.name}: readiness check failed: {e}")
            return
        if ok and not service.exited.is_set():
            service.log.note(f"ready after {time.monotonic() - started:.1f}s")
        elif self.ctx.cancel.cancelled:
            return
        elif service.exited.is_set():
            failures.append(f"service {service.name} exited {service.ended} before it was ready")
        else:
            failures.append(f"service {service.name} not ready after {ready.timeout:g}s")
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
            env={**self.env, **service.spec.environment},
            base=self.ctx.base_config(f"{service.name}-ready"),
        )
        with self.ctx.images.rootfs(service.image) as rootfs:
            while not service.exited.is_set():
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


def _discard(stream: str, data: bytes) -> None:
    """Readiness commands speak through their exit code only."""
