"""``dockyard run``: a container from a stored image, with the runtime RUN steps use.

The image is pulled first if the store lacks it, as docker does. The container's state
is ``<root>/containers/<id>/``: with ``--rm`` it is deleted afterwards; without, the
overlay upper dir (everything the container changed) and ``container.json`` (image,
snapshot chain, what ran, exit code) stay there for a later commit.

Exit status: the command's own; 125 if the container could not be run (as docker).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dockyard.cli.common import open_store, parse_ref, tls_option
from dockyard.cli.progress import progress_display

if TYPE_CHECKING:
    from dockyard.runtime import Mount

CONTAINERS_DIR = "containers"
RUN_FAILED = 125


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("--rm", "remove", is_flag=True, help="Delete the container's state when it exits.")
@click.option(
    "-v", "--volume", "volumes", multiple=True, metavar="HOST:CTR[:ro]", help="Bind a host path."
)
@click.option("-e", "--env", "env", multiple=True, metavar="K[=V]", help="Set a variable.")
@click.option("-w", "--workdir", metavar="DIR", help="Working directory (created if missing).")
@click.option("-u", "--user", metavar="USER[:GROUP]", help="Names or ids, resolved in the image.")
@click.option(
    "--network",
    type=click.Choice(["default", "none", "host"]),
    default="default",
    show_default=True,
    help="Private with outbound NAT (no host address reachable), loopback only, or the host's.",
)
@click.option("--entrypoint", help='Replace the image ENTRYPOINT (and drop its CMD); "" clears it.')
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin connected.")
@click.option("-t", "--tty", is_flag=True, help="Give the container a terminal.")
@tls_option
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(
    remove: bool,
    volumes: tuple[str, ...],
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    network: str,
    entrypoint: str | None,
    interactive: bool,
    tty: bool,
    tls_verify: bool | None,
    image: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND (default: the image's) in a new container from IMAGE.

    The exit status is COMMAND's, or 125 if the container could not be run.
    """
    from dockyard.errors import ContainerError, NotFound
    from dockyard.runtime import NONE, ContainerConfig, Snapshots, chain_ids, container_config
    from dockyard.runtime import run as run_container
    from dockyard.runtime.container import new_id
    from dockyard.runtime.mounts import remove_tree
    from dockyard.runtime.nat import nat_network
    from dockyard.runtime.rootfs import overlay_rootfs
    from dockyard.transfer.pull import ensure_image

    if tty and not os.isatty(sys.stdin.fileno()):
        raise click.UsageError("the input device is not a TTY (drop -t)")
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
    config = container_config(
        image_config,
        args=command,
        entrypoint=entrypoint,
        env=_parse_env(env),
        user=user,
        workdir=workdir,
        base=ContainerConfig(
            args=(),
            network=NONE if network == "default" else network,
            mounts=[_parse_volume(v) for v in volumes],
            terminal=tty,
        ),
    )
    container_id = new_id()
    state = store.root / CONTAINERS_DIR / container_id
    record = {
        "id": container_id,
        "image": str(ref),
        "manifest": manifest.digest,
        "chain": chain_ids((image_config.get("rootfs") or {}).get("diff_ids") or []),
        "upper": "upper",
        "args": list(config.args),
        "created": datetime.now(UTC).isoformat(),
    }
    code = RUN_FAILED
    snapshots = Snapshots(store)  # holds the image's snapshots until the process ends
    try:
        lowers = snapshots.prepare(manifest)
        state.mkdir(parents=True)
        _write_record(state, record)
        with contextlib.ExitStack() as stack:
            if network == "default":
                config = stack.enter_context(nat_network()).apply(config)
            rootfs = stack.enter_context(overlay_rootfs(lowers, state))
            code = run_container(
                rootfs.merged,
                config,
                root=store.root,
                stdin=sys.stdin if interactive or tty else None,
                container_id=container_id,
            )
    except ContainerError as e:
        click.echo(f"dockyard: error: {e}", err=True)
    finally:
        if remove:
            remove_tree(state)
        elif state.exists():
            _write_record(state, {**record, "exit_code": code})
    sys.exit(code)  # not ctx.exit(): main() runs click non-standalone, which drops it


def _parse_env(items: tuple[str, ...]) -> dict[str, str]:
    """``K=V`` sets; a bare ``K`` passes the variable on from here, if it is set."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise click.BadParameter(f"{item!r}: expected K=V", param_hint="-e")
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env


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


def _write_record(state: Path, record: dict[str, object]) -> None:
    (state / "container.json").write_text(json.dumps(record, indent=2) + "\n")
