"""``dockyard run``: a container from a stored image, with the runtime RUN steps use.

The image is pulled first if the store lacks it, as docker does. Without ``--rm`` the
container is a working container (:mod:`dockyard.containers`): its name goes to stderr
before the command starts, and ``dockyard container ls/diff/commit/rm`` see it. With
``--rm`` the rootfs is a scratch overlay, deleted afterwards. ``-d`` runs the working
container in the background (:mod:`dockyard.containers.background`) and prints its
name: ``container logs|stop|exec`` reach it (its log rotated as ``--log-opt`` says);
with ``--rm`` it is deleted when it ends.

:func:`run_options` and :func:`run_command` are shared with ``container run``.

Exit status: the command's own; 125 if the container could not be run (as docker).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

from dockyard.cli.common import open_store, parse_pairs, parse_ref, tls_option

if TYPE_CHECKING:
    from dockyard.containers.logfile import LogLimits
    from dockyard.runtime import ContainerConfig, Mount
    from dockyard.store import Store

RUN_FAILED = 125
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RunOptions:
    """What ``run`` and ``container run`` take about the process and its isolation."""

    volumes: tuple[str, ...]
    env: tuple[str, ...]
    workdir: str | None
    user: str | None
    network: str
    interactive: bool
    tty: bool


def run_options(f: F) -> F:
    """Adds ``-v -e -w -u --network -i -t``; the command gets them as ``options``."""
    options = [
        click.option(
            "-v",
            "--volume",
            "volumes",
            multiple=True,
            metavar="HOST:CTR[:ro]",
            help="Bind a host path.",
        ),
        click.option("-e", "--env", "env", multiple=True, metavar="K[=V]", help="Set a variable."),
        click.option(
            "-w", "--workdir", metavar="DIR", help="Working directory (created if missing)."
        ),
        click.option(
            "-u", "--user", metavar="USER[:GROUP]", help="Names or ids, resolved in the image."
        ),
        click.option(
            "--network",
            type=click.Choice(["default", "none", "host"]),
            default="default",
            show_default=True,
            help="Private with outbound NAT (no host address reachable), loopback only, "
            "or the host's.",
        ),
        click.option("-i", "--interactive", is_flag=True, help="Keep stdin connected."),
        click.option("-t", "--tty", is_flag=True, help="Give the container a terminal."),
    ]

    @functools.wraps(f)  # keeps the options declared below this decorator
    def gather(**kw: Any) -> Any:
        names = ("volumes", "env", "workdir", "user", "network", "interactive", "tty")
        kw["options"] = RunOptions(**{name: kw.pop(name) for name in names})
        if kw["options"].tty and not os.isatty(sys.stdin.fileno()):
            raise click.UsageError("the input device is not a TTY (drop -t)")
        return f(**kw)

    for option in reversed(options):
        gather = option(gather)
    return gather  # type: ignore[return-value]


def run_config(
    image_config: dict[str, Any],
    command: tuple[str, ...],
    options: RunOptions,
    entrypoint: str | None = None,
) -> ContainerConfig:
    """What to run: the image's defaults with the command line's overrides."""
    from dockyard.runtime import NONE, ContainerConfig, container_config

    return container_config(
        image_config,
        args=command,
        entrypoint=entrypoint,
        env=parse_pairs(options.env, "-e", bare="environment"),  # bare K: passed on if set
        user=options.user,
        workdir=options.workdir,
        base=ContainerConfig(
            args=(),
            network=NONE if options.network == "default" else options.network,
            mounts=[_parse_volume(v) for v in options.volumes],
            terminal=options.tty,
        ),
    )


def run_command(store: Store, rootfs: Path, config: ContainerConfig, options: RunOptions) -> int:
    """Run ``config`` in the mounted ``rootfs`` on ``options``'s network; return its exit code.

    125 (the error on stderr) if it could not be run."""
    from dockyard.containers.launch import run_in_rootfs
    from dockyard.errors import ContainerError

    try:
        return run_in_rootfs(store, rootfs, config, options.network, _stdin(options))
    except ContainerError as e:
        click.echo(f"dockyard: error: {e}", err=True)
        return RUN_FAILED


def _stdin(options: RunOptions) -> TextIO | None:
    return sys.stdin if options.interactive or options.tty else None


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("--rm", "remove", is_flag=True, help="Delete the container when it exits.")
@click.option("--name", help="Name the container (default: <image>-working-container[-N]).")
@click.option(
    "-d", "--detach", is_flag=True, help="Run in the background; print the container's name."
)
@click.option(
    "--log-opt", "log_opts", multiple=True, metavar="K=V",
    help="With -d: rotate the log at max-size=SIZE (10M), keeping max-file=N files (3).",
)  # fmt: skip
@run_options
@click.option("--entrypoint", help='Replace the image ENTRYPOINT (and drop its CMD); "" clears it.')
@tls_option
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(
    remove: bool,
    name: str | None,
    detach: bool,
    log_opts: tuple[str, ...],
    options: RunOptions,
    entrypoint: str | None,
    tls_verify: bool | None,
    image: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND (default: the image's) in a new container from IMAGE.

    Without --rm the container stays (its name is printed on stderr): see `dockyard
    container`. The exit status is COMMAND's, or 125 if the container could not be run.
    """
    from dockyard.cli.progress import progress_display
    from dockyard.containers.launch import run as run_container
    from dockyard.errors import ContainerError

    if remove and name and not detach:
        raise click.UsageError("--name names a container that stays: drop --rm or --name")
    if detach and (options.interactive or options.tty):
        raise click.UsageError("-d runs without a terminal: use `container exec -it` into it")
    if log_opts and not detach:
        raise click.UsageError("--log-opt is for the log of -d")
    ref = parse_ref(image)
    log = _log_limits(log_opts)
    env = parse_pairs(options.env, "-e", bare="environment")  # bare K: passed on if set
    mounts = [_parse_volume(v) for v in options.volumes]
    try:
        result = run_container(
            ref,
            command,
            store=open_store(),
            remove=remove,
            name=name,
            detach=detach,
            log=log,
            entrypoint=entrypoint,
            env=env,
            user=options.user,
            workdir=options.workdir,
            mounts=mounts,
            network=options.network,
            stdin=_stdin(options),
            terminal=options.tty,
            tls_verify=tls_verify,
            progress=progress_display("auto"),  # entered for a pull only
            note=lambda _: click.echo(f"Unable to find image {ref} locally, pulling it", err=True),
            on_created=lambda created: click.echo(created, err=True),
        )
    except ContainerError as e:
        click.echo(f"dockyard: error: {e}", err=True)
        sys.exit(RUN_FAILED)
    if detach:
        click.echo(result.name)
    sys.exit(result.exit_code)  # not ctx.exit(): main() runs click non-standalone


def _log_limits(values: tuple[str, ...]) -> LogLimits:
    """docker's ``--log-opt max-size=10m --log-opt max-file=3``."""
    from dockyard.containers.logfile import MAX_FILES, LogLimits
    from dockyard.errors import DockyardError
    from dockyard.layers.limits import parse_size

    limits = LogLimits()
    for key, value in parse_pairs(values, "--log-opt").items():
        if key == "max-size":
            try:
                size = parse_size(value, "max-size")
            except DockyardError as e:
                raise click.BadParameter(str(e), param_hint="--log-opt") from None
            if size is None:
                raise click.BadParameter("max-size=none: give a size", param_hint="--log-opt")
            limits = replace(limits, max_size=size)
        elif key == "max-file":
            if not value.isdigit() or not 1 <= int(value) <= MAX_FILES:
                raise click.BadParameter(
                    f"max-file={value!r}: expected a count from 1 to {MAX_FILES}",
                    param_hint="--log-opt",
                )
            limits = replace(limits, max_files=int(value))
        else:
            raise click.BadParameter(
                f"{key!r}: expected max-size or max-file", param_hint="--log-opt"
            )
    return limits


def _parse_volume(text: str) -> Mount:
    from dockyard.runtime import Mount

    host, sep, rest = text.partition(":")
    destination, _, mode = rest.partition(":")
    if not sep or not host or not destination or mode not in ("", "ro", "rw"):
        raise click.BadParameter(f"{text!r}: expected HOST:CTR[:ro]", param_hint="-v")
    source = Path(host).absolute()
    if not source.exists():
        raise click.BadParameter(f"{text!r}: {source} does not exist", param_hint="-v")
    return Mount.bind(str(source), destination, readonly=mode == "ro")
