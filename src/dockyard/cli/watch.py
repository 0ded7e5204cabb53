"""``dockyard watch``: build, then rebuild whenever the context changes.

See :mod:`dockyard.watch`; with ``--run``, restart a container on each new image.

It takes every option of ``dockyard build`` (the same parameters, invoked the same way
for each build, so the build cache decides what reruns) and prints, on stderr, one
``watch:`` line per build with the seconds from the first change seen to the image.
A failed build is reported and the watch goes on. The ``--run`` container is
``dockyard run --rm``'s: a scratch overlay, the private NAT network, its output on ours;
a new image stops it (the image's StopSignal, SIGKILL after ``--stop-timeout``) and
starts the next.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dockyard.cli.build import build as build_command
from dockyard.cli.common import open_store, parse_ref

if TYPE_CHECKING:
    from dockyard.reference import Reference
    from dockyard.runtime import Container
    from dockyard.store import Store

WATCH_TAG = "localhost/dockyard-watch/{name}:latest"


class Runner:
    """The container of ``watch --run``, restarted on each new image."""

    def __init__(self, store: Store, command: Sequence[str], stop_timeout: float):
        from dockyard.runtime import Snapshots

        self.store = store
        self.command = tuple(command)
        self.stop_timeout = stop_timeout
        self._stack = contextlib.ExitStack()
        self._snapshots = self._stack.enter_context(Snapshots(store))
        self._run: contextlib.ExitStack | None = None
        self._container: Container | None = None
        self._pidfd: int | None = None
        self._stop_signal: int = signal.SIGTERM

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._stack.close()

    def fds(self) -> list[int]:
        """What to wait on: the running container's end."""
        return [self._pidfd] if self._pidfd is not None else []

    def restart(self, ref: Reference) -> None:
        """Stop the container, if one runs, and start one on the image ``ref``."""
        from dockyard.cli.run import RunOptions, run_config
        from dockyard.oci.config import ImageConfig
        from dockyard.runtime import Container
        from dockyard.runtime.imageconfig import parse_signal
        from dockyard.runtime.nat import nat_network
        from dockyard.runtime.rootfs import scratch_rootfs

        self.stop()
        manifest = self.store.image_manifest(self.store.resolve(ref))
        assert manifest is not None  # we just built it for this platform
        image_config = self.store.read_config(manifest)
        options = RunOptions((), (), None, None, "default", False, False)
        config = run_config(image_config, self.command, options)
        with contextlib.suppress(ValueError):
            stop = ImageConfig(image_config).stop_signal or "SIGTERM"
            self._stop_signal = parse_signal(stop)
        with contextlib.ExitStack() as run:
            lowers = self._snapshots.prepare(manifest)
            rootfs = run.enter_context(scratch_rootfs(self._snapshots, lowers))
            config = run.enter_context(nat_network()).apply(config)
            container = run.enter_context(
                Container(rootfs.merged, config, root=self.store.root, on_output=_echo)
            )
            assert container.pid is not None
            self._pidfd = os.pidfd_open(container.pid)
            run.callback(self._forget)
            self._container, self._run = container, run.pop_all()
        click.echo(f"watch: container {container.id} started on {ref}", err=True)

    def ended(self, fd: int) -> None:
        """The container's runc process has exited: say how, and clean up."""
        if fd == self._pidfd:
            self.stop()

    def stop(self) -> None:
        """Stop the container (StopSignal, then SIGKILL) and clean up after it."""
        from dockyard.errors import ContainerError
        from dockyard.runtime import ContainerTimeout

        container, run = self._container, self._run
        if container is None or run is None:
            return
        # A signal its init cannot catch never arrives: then there is nothing to wait for.
        timeout = self.stop_timeout if container.send_signal(self._stop_signal) else 0
        try:
            code: int | str = container.wait(timeout)
        except ContainerTimeout:
            code = "killed"  # wait() has killed it
        except ContainerError as e:
            code = str(e)
        with run:
            pass
        click.echo(f"watch: container {container.id} exited ({code})", err=True)

    def _forget(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
        self._container = self._run = self._pidfd = None


def _echo(stream: str, chunk: bytes) -> None:
    out = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
    out.write(chunk)
    out.flush()


def _watch_params() -> list[click.Parameter]:
    return [
        *build_command.params,
        click.Option(
            ["--run"],
            is_flag=True,
            help="Run the image after each build (its command, or the one after --), "
            "restarting it on the next image.",
        ),
        click.Option(
            ["--stop-timeout"],
            type=click.FloatRange(min=0),
            default=10.0,
            show_default=True,
            help="Seconds from the StopSignal to SIGKILL when --run restarts.",
        ),
        click.Argument(["command"], nargs=-1, type=click.UNPROCESSED),
    ]


def _watch(run: bool, stop_timeout: float, command: tuple[str, ...], **build_args: Any) -> None:
    """Build the Dockerfile in CONTEXT, then again whenever a file of CONTEXT (minus
    .dockerignore) changes. Takes every option of `dockyard build`.

    With --run, run the image after each build, stopping the previous container.
    """
    from dockyard.errors import DockyardError
    from dockyard.watch import ContextWatcher, rebuild_loop

    if command and not run:
        raise click.UsageError("a command after -- is run only with --run")
    context: Path = build_args["context"]
    if run:
        if build_args["output"] not in (None, "type=store"):
            raise click.UsageError("--run runs an image from the store: drop --output")
        if not build_args["tags"]:
            name = "".join(c if c.isalnum() else "-" for c in context.resolve().name.lower())
            build_args["tags"] = (WATCH_TAG.format(name=name.strip("-") or "context"),)
    ctx = click.get_current_context()
    signal.signal(signal.SIGTERM, _interrupt)  # cleanup (the container) as for Ctrl-C

    with contextlib.ExitStack() as stack:
        watcher = stack.enter_context(ContextWatcher(context, build_args["dockerfile"]))
        runner = None
        if run:
            runner = stack.enter_context(Runner(open_store(), command, stop_timeout))

        def build(changed: Sequence[str], since: float) -> None:
            what = "built" if not changed else f"rebuilt after a change to {_summary(changed)}"
            try:
                ctx.invoke(build_command, **build_args)
            except DockyardError as e:
                click.echo(f"dockyard: error: {e}", err=True)
                click.echo(f"watch: build failed after {time.monotonic() - since:.2f}s", err=True)
                return
            click.echo(f"watch: {what} in {time.monotonic() - since:.2f}s", err=True)
            if runner is not None:
                try:
                    runner.restart(parse_ref(build_args["tags"][0]))
                except DockyardError as e:
                    click.echo(f"dockyard: error: {e}", err=True)

        rebuild_loop(
            watcher,
            build,
            also_wait=runner.fds if runner else list,
            on_ready=runner.ended if runner else lambda fd: None,
        )


def _summary(changed: Sequence[str]) -> str:
    shown = ", ".join(changed[:3])
    return shown + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


watch = click.Command(
    "watch",
    callback=_watch,
    params=_watch_params(),
    help=_watch.__doc__,
    short_help="Rebuild (and rerun) whenever the build context changes.",
)
