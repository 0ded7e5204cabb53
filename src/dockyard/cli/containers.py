"""``dockyard container``: working containers (see :mod:`dockyard.containers`).

``create`` (buildah ``from``), ``run`` (with ``dockyard run``'s isolation and options),
``mount``/``umount`` (edit from the host), ``diff``, ``commit``, ``ls``, ``rm``,
``prune``; ``logs``, ``stop`` and ``exec`` for those running in the background
(``dockyard run -d``, :mod:`dockyard.containers.background`). Every change to a
container holds its lock, so a second command on a busy container fails at once with
one line instead of waiting or corrupting it.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from dockyard.cli.common import open_store, parse_ref, print_json, print_table, tls_option
from dockyard.cli.run import RUN_FAILED, RunOptions, run_command, run_config, run_options

if TYPE_CHECKING:
    from dockyard.containers.catalog import Catalog
    from dockyard.store import Store

SCRATCH = "scratch"


def _catalog() -> tuple[Store, Catalog]:
    from dockyard.containers.catalog import Catalog

    store = open_store()
    return store, Catalog(store)


@click.group("container")
def container() -> None:
    """Working containers: create from an image, run in, edit, diff, commit."""


@container.command()
@click.option("--name", help="Its name (default: <image>-working-container[-N]).")
@tls_option
@click.argument("image")
def create(name: str | None, tls_verify: bool | None, image: str) -> None:
    """Make a working container over IMAGE and print its name.

    IMAGE is pulled if missing; `scratch` is an empty one."""
    from dockyard.runtime import Snapshots, stored_image

    store, catalog = _catalog()
    manifest = None
    if image != SCRATCH:
        ref = parse_ref(image)
        note = lambda _: click.echo(f"Unable to find image {ref} locally, pulling it", err=True)  # noqa: E731
        manifest = stored_image(store, ref, tls_verify=tls_verify, note=note).manifest
        image = str(ref)
    with Snapshots(store) as snapshots:
        click.echo(catalog.create(snapshots, image, manifest, name).name)


@container.command("run", context_settings={"allow_interspersed_args": False})
@run_options
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_in(options: RunOptions, name: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in the container NAME; its changes stay in the container.

    The exit status is COMMAND's, or 125 if it could not be run.
    """
    from dockyard.containers import rootfs
    from dockyard.errors import ContainerError
    from dockyard.runtime import Snapshots

    if command[0] == "--":  # ``container run NAME -- CMD``: click keeps it, unprocessed
        command = command[1:]
    if not command:
        raise click.UsageError("no command to run")
    store, catalog = _catalog()
    code = RUN_FAILED
    with catalog.locked(catalog.get(name)) as found, Snapshots(store) as snapshots:
        manifest = rootfs.head_manifest(store, found)
        image_config = store.read_config(manifest) if manifest else {}
        try:
            config = run_config(image_config, command, options)
        except ContainerError as e:
            click.echo(f"dockyard: error: {e}", err=True)
        else:
            with rootfs.merged(store, snapshots, found) as merged:
                code = run_command(store, merged, config, options)
            found.record.command = list(config.args)
            found.record.exit_code = code
            found.save()
    sys.exit(code)


@container.command()
@click.argument("name")
def mount(name: str) -> None:
    """Mount the container's rootfs and print where: edit it with any host tool."""
    from dockyard.containers import rootfs
    from dockyard.runtime import Snapshots

    store, catalog = _catalog()
    with catalog.locked(catalog.get(name)) as found, Snapshots(store) as snapshots:
        click.echo(rootfs.mount(store, snapshots, found))


@container.command()
@click.argument("name")
def umount(name: str) -> None:
    """Unmount what `container mount` mounted."""
    from dockyard.containers import rootfs

    _, catalog = _catalog()
    with catalog.locked(catalog.get(name)) as found:
        rootfs.unmount(found)


@container.command()
@click.argument("name")
def diff(name: str) -> None:
    """What changed since the container's image (or its last commit).

    A added, C changed, D deleted."""
    from dockyard.containers import rootfs
    from dockyard.containers.diff import changes
    from dockyard.runtime import Snapshots

    store, catalog = _catalog()
    with catalog.locked(catalog.get(name)) as found, Snapshots(store) as snapshots:
        lowers = rootfs.lowers(store, snapshots, found)
        for kind, path in changes(found.upper, lowers):
            click.echo(f"{kind} {path}")


@container.command()
@click.option("-m", "--message", help="The commit message (history comment).")
@click.option(
    "-c", "--change", "changes", multiple=True, metavar="INSTRUCTION",
    help="A Dockerfile config instruction to apply: 'CMD [\"sh\"]', 'ENV K=V'...",
)  # fmt: skip
@click.option("--squash", is_flag=True, help="One layer of the whole rootfs.")
@click.option("--allow-empty", is_flag=True, help="Commit an empty layer if nothing changed.")
@click.option(
    "--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip", show_default=True
)
@click.argument("name")
@click.argument("image")
def commit(
    message: str | None,
    changes: tuple[str, ...],
    squash: bool,
    allow_empty: bool,
    compression: str,
    name: str,
    image: str,
) -> None:
    """Commit the container NAME's changes as one new layer of IMAGE; print its digest.

    The container then stands on IMAGE: a later commit adds only later changes.
    """
    from dockyard.containers.commit import commit as commit_container
    from dockyard.containers.commit import parse_changes
    from dockyard.runtime import Snapshots

    ref = parse_ref(image)
    instructions = parse_changes(changes)
    store, catalog = _catalog()
    with catalog.locked(catalog.get(name)) as found, Snapshots(store) as snapshots:
        manifest = commit_container(
            catalog,
            snapshots,
            found,
            ref,
            message=message,
            changes=instructions,
            squash=squash,
            allow_empty=allow_empty,
            compression=None if compression == "none" else compression,
        )
    click.echo(manifest.digest)


@container.command("ls")
@click.option(
    "-a", "--all", "all_", is_flag=True, help="Accepted for docker's sake: all are listed."
)
@click.option("-q", "--quiet", is_flag=True, help="Names only.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def ls(all_: bool, quiet: bool, fmt: str) -> None:
    """List the working containers (those of `dockyard run` without --rm too)."""
    _, catalog = _catalog()
    rows = []
    for found in catalog.list():
        record = found.record
        if found.in_use():
            status = "running"
        elif record.mounted:
            status = "mounted"
        elif record.exit_code is not None:
            status = f"exited ({record.exit_code})"
        else:
            status = "created"
        rows.append(
            {
                "name": record.name,
                "id": record.id[:12] if fmt == "table" else record.id,
                "image": record.image,
                "created": record.created,
                "status": status,
                "command": record.command,
            }
        )
    if fmt == "json":
        print_json(rows)
        return
    if quiet:
        for row in rows:
            click.echo(row["name"])
        return
    print_table([[h for h, _ in _COLUMNS], *([row[k] for _, k in _COLUMNS] for row in rows)])


_COLUMNS = [
    ("NAME", "name"),
    ("ID", "id"),
    ("IMAGE", "image"),
    ("CREATED", "created"),
    ("STATUS", "status"),
]


@container.command()
@click.argument("names", nargs=-1, required=True)
def rm(names: tuple[str, ...]) -> None:
    """Delete containers (unmounting them) with their changes."""
    _, catalog = _catalog()
    for name in names:
        with catalog.locked(catalog.get(name)) as found:
            catalog.remove(found)
        click.echo(found.name)


@container.command()
@click.option("-f", "--follow", is_flag=True, help="Go on printing what it writes until it stops.")
@click.argument("name")
def logs(follow: bool, name: str) -> None:
    """Print the output of the container's background run (`dockyard run -d`)."""
    from dockyard.containers import background

    _, catalog = _catalog()
    background.write_log(catalog.get(name), sys.stdout.buffer, follow=follow)


@container.command()
@click.option(
    "-t", "--time", "timeout", type=click.FloatRange(min=0), default=10.0, show_default=True,
    help="Seconds from the image's StopSignal to SIGKILL.",
)  # fmt: skip
@click.argument("names", nargs=-1, required=True)
def stop(timeout: float, names: tuple[str, ...]) -> None:
    """Stop containers running in the background.

    The image's StopSignal (SIGTERM by default), then SIGKILL."""
    from dockyard.containers import background

    _, catalog = _catalog()
    for name in names:
        found = catalog.get(name)
        if not background.stop(catalog, found, timeout):
            click.echo(f"dockyard: container {found.name} is not running", err=True)
        click.echo(found.name)


@container.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-e", "--env", "env", multiple=True, metavar="K[=V]", help="Set a variable.")
@click.option("-w", "--workdir", metavar="DIR", help="Working directory.")
@click.option("-u", "--user", metavar="USER[:GROUP]", help="Names or ids, resolved in it.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin connected.")
@click.option("-t", "--tty", is_flag=True, help="Give the command a terminal.")
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_in(
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    interactive: bool,
    tty: bool,
    name: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND in a container running in the background; its exit status is COMMAND's."""
    from dockyard.cli.common import parse_pairs
    from dockyard.containers import background

    if command[0] == "--":
        command = command[1:]
    if not command:
        raise click.UsageError("no command to run")
    if tty and not os.isatty(sys.stdin.fileno()):
        raise click.UsageError("the input device is not a TTY (drop -t)")
    _, catalog = _catalog()
    code = background.exec_command(
        catalog,
        catalog.get(name),
        command,
        env=parse_pairs(env, "-e", bare="environment"),
        cwd=workdir,
        user=user,
        interactive=interactive,
        tty=tty,
    )
    sys.exit(code)


@container.command()
def prune() -> None:
    """Delete every container no command is using, and what killed ones left."""
    from dockyard.errors import ContainerError

    _, catalog = _catalog()
    for found in catalog.list():
        try:
            with catalog.locked(found) as locked:
                catalog.remove(locked)
        except ContainerError:
            continue  # busy, or mounted and in use on the host: it stays
        click.echo(found.name)
    catalog.remove_leftovers()
