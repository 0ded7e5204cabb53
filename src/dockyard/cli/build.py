"""``dockyard build`` and ``dockyard history``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from dockyard.cli.common import open_store, parse_platform, parse_ref, platform_option


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not key:
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE", param_hint=what)
        out[key] = val if sep else os.environ.get(key, "")
    return out


def _secrets(values: tuple[str, ...]) -> dict[str, bytes]:
    """``id=ID,src=FILE`` or ``id=ID,env=VAR`` (``src`` defaults to ``id``)."""
    out = {}
    for value in values:
        fields = dict(item.split("=", 1) for item in value.split(",") if "=" in item)
        secret_id = fields.get("id")
        if not secret_id:
            raise click.BadParameter(f"{value!r}: missing id=", param_hint="--secret")
        if "env" in fields:
            if fields["env"] not in os.environ:
                raise click.BadParameter(f"environment variable {fields['env']} is not set")
            out[secret_id] = os.environ[fields["env"]].encode()
        else:
            path = Path(fields.get("src") or fields.get("source") or secret_id)
            try:
                out[secret_id] = path.read_bytes()
            except OSError as e:
                raise click.BadParameter(
                    f"cannot read {path}: {e.strerror}", param_hint="--secret"
                ) from None
    return out


def _output(value: str | None) -> tuple[str, str | None]:
    if not value:
        return "store", None
    fields = dict(item.split("=", 1) for item in value.split(",") if "=" in item)
    kind = fields.get("type", "store")
    if kind not in ("store", "registry", "oci", "oci-archive", "docker-archive", "local"):
        raise click.BadParameter(f"unknown output type {kind!r}", param_hint="--output")
    dest = fields.get("dest")
    if kind not in ("store", "registry") and not dest:
        raise click.BadParameter(f"type={kind} needs dest=PATH", param_hint="--output")
    return kind, dest


@click.command()
@click.argument("context", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-t", "--tag", "tags", multiple=True, help="Name the image (repeatable).")
@click.option("-f", "--file", "dockerfile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE")
@click.option("--target", help="Build up to this stage.")
@click.option("--secret", "secrets", multiple=True, metavar="id=ID,src=FILE|env=VAR")
@click.option("--no-cache", is_flag=True, help="Execute every step, cache mounts empty.")
@click.option("--cache-from", multiple=True, metavar="REF", help="Import a cache image.")
@click.option("--cache-to", metavar="REF", help="Export the cache of this build.")
@click.option("--output", "output", metavar="type=TYPE,dest=PATH")
@click.option("--push", is_flag=True, help="Push every -t name.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE")
@click.option(
    "--network",
    type=click.Choice(["default", "none", "host"]),
    default="default",
    show_default=True,
    help="RUN steps' network: private with outbound NAT, loopback only, or the host's.",
)
@click.option(
    "--allow",
    "entitlements",
    multiple=True,
    type=click.Choice(["network.host"]),
    help="Grant an entitlement: network.host honours RUN --network=host.",
)
@platform_option
@click.option("--progress", type=click.Choice(["auto", "plain", "tty", "quiet"]), default="auto")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID.")
def build(
    context: Path,
    tags: tuple[str, ...],
    dockerfile: Path | None,
    build_args: tuple[str, ...],
    target: str | None,
    secrets: tuple[str, ...],
    no_cache: bool,
    cache_from: tuple[str, ...],
    cache_to: str | None,
    output: str | None,
    push: bool,
    labels: tuple[str, ...],
    network: str,
    entitlements: tuple[str, ...],
    platform: str | None,
    progress: str,
    quiet: bool,
) -> None:
    """Build the Dockerfile in CONTEXT into an image, with no daemon."""
    import time

    from dockyard.build.builder import BuildOptions
    from dockyard.build.builder import build as run_build

    kind, dest = _output(output)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    options = BuildOptions(
        context=context,
        dockerfile=dockerfile,
        tags=[parse_ref(t) for t in tags],
        build_args=_pairs(build_args, "--build-arg"),
        target=target,
        secrets=_secrets(secrets),
        no_cache=no_cache,
        labels=_pairs(labels, "--label"),
        network=network,
        allow_network_host="network.host" in entitlements,
        platform=parse_platform(platform),
        source_date_epoch=int(epoch) if epoch else None,
        cache_from=list(cache_from),
        cache_to=cache_to,
    )
    silent = quiet or progress == "quiet"
    started = time.monotonic()
    store = open_store()
    result = run_build(store, options, None if silent else lambda line: click.echo(line, err=True))
    if push or kind == "registry":
        _push(store, options.tags)
    if kind not in ("store", "registry"):
        _export(store, result.digest, kind, Path(dest))
    if quiet:
        click.echo(result.image_id)
        return
    click.echo(
        f"built {result.digest} (image ID {result.image_id[7:19]}) in "
        f"{time.monotonic() - started:.2f}s: {result.executed} steps run, {result.cached} cached",
        err=True,
    )
    for ref in options.tags:
        click.echo(str(ref))


def _push(store, tags) -> None:
    from dockyard.registry.client import RegistryDestination, client_for
    from dockyard.transfer.copy import copy_image

    if not tags:
        raise click.UsageError("--push needs at least one -t name")
    for ref in tags:
        copy_image(store.source(ref), RegistryDestination(client_for(ref), ref), all_platforms=True)


def _export(store, digest: str, kind: str, dest: Path) -> None:
    from dockyard.reference import Reference
    from dockyard.transfer.copy import copy_image
    from dockyard.transfer.transports import Location, open_destination

    ref = Reference("localhost", "dockyard-build", digest=digest)
    source = store.source(ref)
    if kind == "local":
        from dockyard.transfer.export import export_rootfs

        export_rootfs(source, dest)
        return
    copy_image(source, open_destination(Location(kind, dest, None), store_root=store.root))


@click.command()
@click.argument("image")
@click.option("--no-trunc", is_flag=True, help="Show whole commands.")
def history(image: str, no_trunc: bool) -> None:
    """Show IMAGE's layers: the instruction that made each and its size."""
    store = open_store()
    desc = store.resolve(parse_ref(image))
    manifest = store.image_manifest(desc)
    if manifest is None:
        raise click.ClickException(f"{image}: no image for this platform")
    config = store.read_config(manifest)
    layers = iter(manifest.layers)
    rows = [("CREATED", "CREATED BY", "SIZE", "COMMENT")]
    for entry in reversed(_history_with_layers(config.get("history") or [], layers)):
        created_by = entry["created_by"]
        if not no_trunc and len(created_by) > 60:
            created_by = created_by[:57] + "..."
        rows.append(
            (entry.get("created", "")[:19], created_by, entry["size"], entry.get("comment", ""))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        sys.stdout.write(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )


def _history_with_layers(history: list[dict], layers) -> list[dict]:
    out = []
    for entry in history:
        size = "0 B"
        if not entry.get("empty_layer"):
            layer = next(layers, None)
            size = f"{layer.size / 1000:.1f} kB" if layer else "?"
        out.append({**entry, "created_by": entry.get("created_by", ""), "size": size})
    return out
