"""Stopping a run's containers from another thread (Ctrl-C, a failed service).

Steps and readiness probes run their containers in worker threads, which Ctrl-C never
reaches: Python delivers it to the main thread only. That thread calls
:meth:`Cancellation.cancel`, which kills every container being waited for and makes
sure none starts afterwards; the workers then see :class:`Cancelled`, clean up their
mounts and return. A container started in the same instant as the cancel is killed
right after its start. Containers that a build starts for its RUN steps are reached
through a :class:`~dockyard.runtime.container.ContainerGroup` (:meth:`Cancellation.group`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from dockyard.errors import ContainerError
from dockyard.runtime import Container, ContainerConfig, OutputCallback
from dockyard.runtime.container import ContainerGroup


class Cancelled(Exception):
    """The run was cancelled; raised in the worker threads."""


class Cancellation:
    """The cancel flag of one run and the containers it must kill."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._live: set[Container | ContainerGroup] = set()
        self._event = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def check(self) -> None:
        """Raise :class:`Cancelled` if the run has been cancelled."""
        if self._cancelled:
            raise Cancelled

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) if the run is cancelled meanwhile."""
        return self._event.wait(seconds)

    def cancel(self) -> None:
        """Kill every tracked container; no container starts from now on."""
        with self._lock:
            self._cancelled = True
            self._event.set()
            live = list(self._live)
        for container in live:
            with contextlib.suppress(ContainerError):  # it may be ending by itself
                container.kill()

    @contextlib.contextmanager
    def group(self) -> Iterator[ContainerGroup]:
        """A group for the containers started in the block, killed on :meth:`cancel`.

        The block's context counts too. For code that starts containers of its own, such as a build.
        """
        group = ContainerGroup()
        with self._lock:
            self._live.add(group)
            cancelled = self._cancelled
        try:
            if cancelled:
                raise Cancelled
            with group.active():
                yield group
        finally:
            with self._lock:
                self._live.discard(group)

    @contextlib.contextmanager
    def tracking(self, container: Container) -> Iterator[Container]:
        """Start ``container`` (closed on exit) and kill it on :meth:`cancel`."""
        self.check()
        with container:
            with self._lock:
                self._live.add(container)
                cancelled = self._cancelled
            try:
                if cancelled:
                    container.kill()
                    raise Cancelled
                yield container
            finally:
                with self._lock:
                    self._live.discard(container)

    def run(
        self,
        rootfs: Path,
        config: ContainerConfig,
        *,
        root: Path,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
    ) -> int:
        """:func:`dockyard.runtime.run`, cancellable.

        Raise :class:`Cancelled` if the run was cancelled before or while the container ran."""
        container = Container(rootfs, config, root=root, on_output=on_output)
        with self.tracking(container):
            code = container.wait(timeout)
        self.check()
        return code
