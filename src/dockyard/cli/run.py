"""``dockyard run``: a container from a stored image, with the runtime RUN steps use.

The image is pulled first if the store lacks it, as docker does. Without ``--rm`` the
container is a working container (:mod:`dockyard.containers`): its name goes to stderr
before the command starts, and ``dockyard container ls/diff/commit/rm`` see it. With
``--rm`` the rootfs is a scratch overlay, deleted afterwards. ``-d`` runs the working
container in the background (:mod:`dockyard.containers.background`) and prints its
name: ``container logs|stop|exec`` reach it; with ``--rm`` it is deleted when it ends.

:func:`run_options` and :func:`run_command` are shared with ``container run``.

Exit status: the command's own; 125 if the container could not be run (as docker).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dockyard.cli.common import open_store, parse_pairs, parse_ref, tls_option

if TYPE_CHECKING:
    from dockyard.oci.manifest import Manifest
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
    """Run ``config`` in the mounted ``rootfs`` on ``options``'s network; return its exit
    code, or 125 (the error on stderr) if it could not be run."""
    from dockyard.errors import ContainerError
    from dockyard.runtime import run as run_container
    from dockyard.runtime.nat import nat_network

    try:
        with contextlib.ExitStack() as stack:
            if options.network == "default":
                config = stack.enter_context(nat_network()).apply(config)
            return run_container(
                rootfs,
                config,
                root=store.root,
                stdin=sys.stdin if options.interactive or options.tty else None,
            )
    except ContainerError as e:
        click.echo(f"dockyard: error: {e}", err=True)
        return RUN_FAILED


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("--rm", "remove", is_flag=True, help="Delete the container when it exits.")
@click.option("--name", help="Name the container (default: <image>-working-container[-N]).")
@click.option(
    "-d", "--detach", is_flag=True, help="Run in the background; print the container's name."
)
@run_options
@click.option("--entrypoint", help='Replace the image ENTRYPOINT (and drop its CMD); "" clears it.')
@tls_option
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(
    remove: bool,
    name: str | None,
    detach: bool,
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
    from dockyard.containers import rootfs as container_rootfs
    from dockyard.containers.catalog import Catalog
    from dockyard.errors import ContainerError, NotFound
    from dockyard.oci.config import ImageConfig
    from dockyard.runtime import Snapshots
    from dockyard.runtime.rootfs import overlay_rootfs
    from dockyard.transfer.pull import ensure_image

    if remove and name and not detach:
        raise click.UsageError("--name names a container that stays: drop --rm or --name")
    if detach and (options.interactive or options.tty):
        raise click.UsageError("-d runs without a terminal: use `container exec -it` into it")
    ref = parse_ref(image)
    store = open_store()
    with progress_display("auto") as display:
        descriptor = ensure_image(
            store,
            ref,
            tls_verify=tls_verify,
            progress=display,
            note=lambda _: click.echo(f"Unable to find image {ref} locally, pulling it", err=True),
        )
    manifest = store.image_manifest(descriptor)
    if manifest is None:
        raise NotFound(f"image {ref} has no image for this platform in the store")
    image_config = store.read_config(manifest)
    config = run_config(image_config, command, options, entrypoint)
    if detach:
        stop = ImageConfig(image_config).stop_signal or "SIGTERM"
        sys.exit(_run_detached(store, str(ref), manifest, config, stop, options, remove, name))
    code = RUN_FAILED
    with Snapshots(store) as snapshots:  # holds the image's snapshots while it runs
        try:
            if remove:
                lowers = snapshots.prepare(manifest)
                with snapshots.scratch() as scratch, overlay_rootfs(lowers, scratch) as fs:
                    code = run_command(store, fs.merged, config, options)
            else:
                catalog = Catalog(store)
                created = catalog.create(snapshots, str(ref), manifest, name)
                click.echo(created.name, err=True)
                with catalog.locked(created) as container:
                    with container_rootfs.merged(store, snapshots, container) as merged:
                        code = run_command(store, merged, config, options)
                    container.record.command = list(config.args)
                    container.record.exit_code = code
                    container.save()
        except ContainerError as e:
            click.echo(f"dockyard: error: {e}", err=True)
    sys.exit(code)  # not ctx.exit(): main() runs click non-standalone, which drops it


def _run_detached(
    store: Store,
    image: str,
    manifest: Manifest,
    config: ContainerConfig,
    stop: str,
    options: RunOptions,
    remove: bool,
    name: str | None,
) -> int:
    """``run -d``: a working container run by a supervisor of its own
    (:mod:`dockyard.containers.background`); its name on stdout once it runs."""
    from dockyard.containers import background
    from dockyard.containers.catalog import Catalog
    from dockyard.errors import ContainerError
    from dockyard.runtime import Snapshots
    from dockyard.runtime.imageconfig import parse_signal

    try:
        stop_signal = parse_signal(stop)
    except ValueError as e:
        raise ContainerError(f"image {image}: StopSignal: {e}") from None
    with Snapshots(store) as snapshots:
        created = Catalog(store).create(snapshots, image, manifest, name)
    job = background.Job(
        str(store.root),
        created.name,
        config,
        nat=options.network == "default",
        remove=remove,
        stop_signal=stop_signal,
    )
    try:
        background.start(job)
    except ContainerError as e:
        click.echo(f"dockyard: error: {e}", err=True)
        return RUN_FAILED
    click.echo(created.name)
    return 0


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
