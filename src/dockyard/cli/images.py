"""Image commands over the local store: pull, push, images, inspect, tag, rmi, prune."""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from dockyard.cli.common import (
    conversion_options,
    open_source,
    open_store,
    parse_platform,
    parse_ref,
    platform_option,
    print_json,
    progress_option,
    settings,
    tls_option,
)
from dockyard.cli.progress import progress_display


@click.command()
@click.argument("image")
@platform_option
@click.option("--all-platforms", is_flag=True, help="Keep the whole index, every platform.")
@tls_option
@progress_option
@click.option("-q", "--quiet", is_flag=True, help="Print only the manifest digest.")
def pull(
    image: str,
    platform: str | None,
    all_platforms: bool,
    tls_verify: bool | None,
    progress: str,
    quiet: bool,
) -> None:
    """Pull IMAGE from its registry into the local store."""
    from dockyard.transfer.pull import pull as pull_image

    ref = parse_ref(image)
    with progress_display("quiet" if quiet else progress) as display:
        result = pull_image(
            open_store(),
            ref,
            platform=parse_platform(platform),
            all_platforms=all_platforms,
            tls_verify=tls_verify,
            progress=display,
        )
    click.echo(result.digest if quiet else f"{ref}: {result.digest}")


@click.command()
@click.argument("image")
@click.argument("destination", required=False)
@tls_option
@progress_option
@conversion_options
def push(
    image: str,
    destination: str | None,
    tls_verify: bool | None,
    progress: str,
    compression_format: str | None,
    preserve_digests: bool,
) -> None:
    """Push IMAGE from the store to its registry, or to DESTINATION.

    Only blobs the registry lacks are sent; blobs of another repository of the same
    registry are mounted instead of uploaded. Plain-tar layers (a docker-archive's) are
    gzipped on the way, as podman and skopeo do, unless --preserve-digests.
    """
    from dockyard.registry.client import RegistryDestination, client_for
    from dockyard.transfer.convert import plan
    from dockyard.transfer.copy import copy_image

    ref = parse_ref(image)
    target = parse_ref(destination) if destination else ref
    mount_from = ref.repository if ref.registry == target.registry else None
    conversion = plan(
        "docker", compression_format=compression_format, preserve_digests=preserve_digests
    )
    dest = RegistryDestination(client_for(target, tls_verify=tls_verify), target, mount_from)
    with progress_display(progress) as display:
        result = copy_image(
            open_store().source(ref),
            dest,
            all_platforms=True,
            progress=display,
            conversion=conversion,
        )
    click.echo(f"{target}: {result.digest}")


def _age(created: datetime | None) -> str:
    if created is None:
        return "-"
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    seconds = (datetime.now(UTC) - created).total_seconds()
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Print only image IDs.")
@click.option("--digests", is_flag=True, help="Show manifest digests.")
def images(quiet: bool, digests: bool) -> None:
    """List the images in the local store."""
    infos = open_store().images()
    if quiet:
        for info in infos:
            click.echo(info.image_id.split(":", 1)[1][:12])
        return
    rows = [("REPOSITORY", "TAG", *(("DIGEST",) if digests else ()), "IMAGE ID", "CREATED", "SIZE")]
    for info in infos:
        rows.append(
            (
                info.ref.name,
                info.ref.tag or "<none>",
                *((info.descriptor.digest,) if digests else ()),
                info.image_id.split(":", 1)[1][:12],
                _age(info.created),
                _size(info.size),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@click.command()
@click.argument("image")
@platform_option
@tls_option
@click.option("--raw", is_flag=True, help="Print the root manifest exactly as stored.")
@click.option(
    "--layers",
    is_flag=True,
    help="Per layer: what made it, its sizes, the files it adds, changes and deletes; "
    "the image's wasted bytes, efficiency and largest files.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="With --layers: a table (default) or JSON.",
)
@click.option(
    "--svg",
    "svg_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --layers: also write a bar per layer (kept and wasted bytes) as SVG.",
)
def inspect(
    image: str,
    platform: str | None,
    tls_verify: bool | None,
    raw: bool,
    layers: bool,
    output_format: str | None,
    svg_file: Path | None,
) -> None:
    """Show IMAGE's manifest and config as JSON, or (--layers) what is in its layers.

    IMAGE is a store reference or any transport (docker://REF, oci:DIR:TAG, ...).
    """
    import json

    from dockyard.oci import manifest as manifests
    from dockyard.transfer.resolve import resolve_image
    from dockyard.transfer.transports import parse_location

    if (output_format or svg_file) and not layers:
        raise click.UsageError("--format and --svg go with --layers")
    if layers:
        _inspect_layers(image, platform, tls_verify, output_format or "text", svg_file)
        return
    location = parse_location(image)
    source = open_source(location, tls_verify)
    root = source.root_manifest()
    if raw:
        sys.stdout.buffer.write(root.data)
        return
    image_manifest = resolve_image(source, root, parse_platform(platform))
    with source.open_blob(image_manifest.config) as stream:
        config = manifests.parse_config(stream.read(), f"config {image_manifest.config.digest}")
    print_json(
        {
            "Name": str(location),
            "Digest": manifests.parse(root.data, root.media_type).digest,
            "MediaType": root.media_type,
            "Manifest": json.loads(image_manifest.raw),
            "Config": config,
        }
    )


def _inspect_layers(
    image: str,
    platform: str | None,
    tls_verify: bool | None,
    output_format: str,
    svg_file: Path | None,
) -> None:
    from dockyard.check.image import open_image
    from dockyard.check.layers import analyse
    from dockyard.check.svg import layers_svg
    from dockyard.files import atomic

    opened = open_image(
        image, store_root=settings().root, tls_verify=tls_verify, platform=parse_platform(platform)
    )
    report = analyse(opened)
    if svg_file is not None:
        atomic.write_bytes(svg_file, layers_svg(report).encode())
    if output_format == "json":
        print_json(report.to_json())
        return
    click.echo(
        f"{image}: {len(report.layers)} layers, {_size(report.total)} of files, "
        f"{_size(report.wasted)} wasted, efficiency {report.efficiency:.1%}"
    )
    rows = [("LAYER", "COMPRESSED", "UNCOMPRESSED", "ADDED", "CHANGED", "DELETED", "WASTED",
             "CREATED BY")]  # fmt: skip
    for layer in report.layers:
        rows.append(
            (
                str(layer.layer.number),
                _size(layer.layer.descriptor.size),
                _size(layer.uncompressed),
                str(layer.added),
                str(layer.changed),
                str(layer.deleted),
                _size(layer.wasted),
                " ".join(layer.layer.created_by.split())[:80],
            )
        )
    _table(rows)
    click.echo("largest files:")
    largest = [(_size(size), str(number), path) for path, size, number in report.largest]
    _table([("SIZE", "LAYER", "PATH"), *largest])


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@click.command()
@click.argument("first", metavar="IMAGE1")
@click.argument("second", metavar="IMAGE2")
@platform_option
@tls_option
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json"]), default="text",
    show_default=True,
)  # fmt: skip
def diff(
    first: str, second: str, platform: str | None, tls_verify: bool | None, output_format: str
) -> None:
    """Files added (A), removed (D) and changed (C) from IMAGE1 to IMAGE2.

    Either image is a store reference or any transport; layers are streamed, not
    extracted, and file contents compared by digest.
    """
    from dockyard.check.diff import diff_images
    from dockyard.check.image import open_image

    wanted = parse_platform(platform)
    opened = [
        open_image(text, store_root=settings().root, tls_verify=tls_verify, platform=wanted)
        for text in (first, second)
    ]
    result = diff_images(*opened)
    if output_format == "json":
        print_json(result.to_json())
        return
    for path in result.added:
        click.echo(f"A {path}")
    for path in result.removed:
        click.echo(f"D {path}")
    for path, what in result.changed:
        click.echo(f"C {path} ({what})")


@click.command()
@click.argument("source")
@click.argument("targets", nargs=-1, required=True)
def tag(source: str, targets: tuple[str, ...]) -> None:
    """Give the stored image SOURCE the names TARGETS."""
    store = open_store()
    desc = store.resolve(parse_ref(source))
    for target in targets:
        store.tag(parse_ref(target), desc)


@click.command()
@click.argument("image_refs", metavar="IMAGE...", nargs=-1, required=True)
def rmi(image_refs: tuple[str, ...]) -> None:
    """Remove image names from the store; blobs stay until `dockyard prune`."""
    store = open_store()
    for text in image_refs:
        ref = parse_ref(text)
        store.untag(ref)
        click.echo(f"Untagged: {ref}")


@click.command()
@click.option(
    "--keep-storage",
    metavar="SIZE",
    help="Then delete the least recently used build cache, cache mounts and pipeline "
    "runs and caches until the store takes less than SIZE (10GB, 512MiB).",
)
@click.option("--until", metavar="DURATION", help="Delete what was unused for DURATION (24h, 7d).")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="type=KIND",
    help="Only these kinds: blobs, snapshots, build-cache, cache-mounts, pipeline-runs, "
    "pipeline-caches, containers (repeatable).",
)
@click.option(
    "--containers",
    is_flag=True,
    help="Also delete stopped working containers (dockyard container) and their changes.",
)
@click.option("--dry-run", is_flag=True, help="List what would go and its bytes; delete nothing.")
def prune(
    keep_storage: str | None,
    until: str | None,
    filters: tuple[str, ...],
    containers: bool,
    dry_run: bool,
) -> None:
    """Delete blobs and snapshots that no named image in the store refers to, the build
    records that named them, and what killed processes left behind.

    With a policy (--keep-storage, --until), a --filter or --dry-run, also what is kept
    for speed -- build cache, RUN --mount=type=cache dirs, pipeline runs and caches --
    by that policy, and print what went per kind. Named images are never deleted, nor
    anything a running build, container or pipeline uses. Working containers go only
    with --containers (or --filter type=containers), and only stopped ones.
    """
    from dockyard.builder.cache import prune_build_records
    from dockyard.containers.catalog import Catalog
    from dockyard.errors import ContainerError
    from dockyard.runtime.container import reap_orphans
    from dockyard.runtime.snapshots import Snapshots

    store = open_store()
    orphans = reap_orphans(store.root)  # first: their rootfs are overlays of snapshots
    catalog = Catalog(store)
    for found in catalog.list():  # a killed run's overlay goes; its changes stay
        with contextlib.suppress(ContainerError), catalog.locked(found):
            pass  # taking the lock repairs (see Catalog.locked)
    if keep_storage or until or filters or containers or dry_run:
        _prune_by_policy(store, keep_storage, until, filters, containers, dry_run, len(orphans))
        return
    blobs = store.prune()
    with Snapshots(store) as snapshots:
        pruned = snapshots.prune()
        records = prune_build_records(store, snapshots.exists)
    parts = [
        f"{len(blobs.removed)} blobs",
        f"{len(pruned.removed)} snapshots",
        f"{records} build records",
    ]
    if leftovers := len(orphans) + blobs.temps + pruned.temps:
        parts.append(f"{leftovers} leftovers of killed processes (containers included)")
    freed = _size(blobs.freed + pruned.freed)
    click.echo(f"removed {', '.join(parts[:-1])} and {parts[-1]}, {freed} freed")


def _prune_by_policy(
    store,
    keep_storage: str | None,
    until: str | None,
    filters: tuple[str, ...],
    containers: bool,
    dry_run: bool,
    orphans: int,
) -> None:
    from dockyard.check.policy import parse_bytes
    from dockyard.ci.pipeline import parse_duration
    from dockyard.disk.prune import PRUNABLE, PrunePolicy
    from dockyard.disk.prune import prune as prune_store

    kinds = set()
    for text in filters:
        key, _, kind = text.partition("=")
        if key != "type" or kind not in PRUNABLE:
            raise click.BadParameter(
                f"{text!r}: expected type=KIND, KIND one of {', '.join(PRUNABLE)}",
                param_hint="--filter",
            )
        kinds.add(kind)
    if containers and kinds:
        kinds.add("containers")
    try:
        policy = PrunePolicy(
            frozenset(kinds) if kinds else None,
            parse_duration(until) if until else None,
            parse_bytes(keep_storage) if keep_storage else None,
            containers=containers or "containers" in kinds,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    report = prune_store(store, policy, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    if dry_run:
        for kind, items in report.removed.items():
            for item in items:
                click.echo(f"{verb} {kind} {item.name} {_size(item.size)}")
    for item in report.spared:
        click.echo(f"kept {item.kind} {item.name}: in use")
    for kind in PRUNABLE:
        if kind in report.removed:
            count = len(report.removed[kind])
            click.echo(f"{kind}: {verb} {count}, {_size(report.freed[kind])}")
    total = sum(report.freed.values())
    leftovers = report.temps + orphans
    tail = f", {leftovers} leftovers of killed processes" if leftovers else ""
    click.echo(f"total: {_size(total)} {'would be ' if dry_run else ''}freed{tail}")
