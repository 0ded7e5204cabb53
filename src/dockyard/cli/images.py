"""Image commands over the local store: pull, push, images, inspect, tag, rmi, prune."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dockyard.cli.common import (
    conversion_options,
    open_source,
    open_store,
    parse_platform,
    parse_ref,
    platform_option,
    print_json,
    print_table,
    progress_option,
    settings,
    tls_option,
)
from dockyard.cli.progress import progress_display
from dockyard.cli.tables import human_bytes, images_table

if TYPE_CHECKING:
    from dockyard.disk.prune import PrunePolicy, PruneReport


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
            ref,
            store=open_store(),
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
    from dockyard.transfer.pull import push as push_image

    ref = parse_ref(image)
    target = parse_ref(destination) if destination else ref
    with progress_display(progress) as display:
        result = push_image(
            ref,
            target,
            store=open_store(),
            tls_verify=tls_verify,
            compression_format=compression_format,
            preserve_digests=preserve_digests,
            progress=display,
        )
    click.echo(f"{target}: {result.digest}")


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Print only image IDs.")
@click.option("--digests", is_flag=True, help="Show manifest digests.")
def images(quiet: bool, digests: bool) -> None:
    """List the images in the local store."""
    lines = images_table(open_store().images(), quiet=quiet, digests=digests)
    for line in lines:
        click.echo(line)


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
        f"{image}: {len(report.layers)} layers, {human_bytes(report.total)} of files, "
        f"{human_bytes(report.wasted)} wasted, efficiency {report.efficiency:.1%}"
    )
    rows = [("LAYER", "COMPRESSED", "UNCOMPRESSED", "ADDED", "CHANGED", "DELETED", "WASTED",
             "CREATED BY")]  # fmt: skip
    for layer in report.layers:
        rows.append(
            (
                str(layer.layer.number),
                human_bytes(layer.layer.descriptor.size),
                human_bytes(layer.uncompressed),
                str(layer.added),
                str(layer.changed),
                str(layer.deleted),
                human_bytes(layer.wasted),
                " ".join(layer.layer.created_by.split())[:80],
            )
        )
    print_table(rows)
    click.echo("largest files:")
    largest = [(human_bytes(size), str(number), path) for path, size, number in report.largest]
    print_table([("SIZE", "LAYER", "PATH"), *largest])


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
    """Delete what no named image needs, and what killed processes left behind.

    That is the blobs and snapshots that no named image in the store refers to, and the build
    records that named them.

    With a policy (--keep-storage, --until), a --filter or --dry-run, also what is kept
    for speed -- build cache, RUN --mount=type=cache dirs, pipeline runs and caches --
    by that policy, and print what went per kind. Named images are never deleted, nor
    anything a running build, container or pipeline uses. Working containers go only
    with --containers (or --filter type=containers), and only stopped ones.
    """
    from dockyard.disk.prune import prune as prune_store

    policy = (
        _policy(keep_storage, until, filters, containers)
        if keep_storage or until or filters or containers
        else None
    )
    summary = prune_store(open_store(), policy, dry_run=dry_run)
    report = summary.report
    if policy is None and not dry_run:
        parts = [
            f"{len(report.removed['blobs'])} blobs",
            f"{len(report.removed['snapshots'])} snapshots",
            f"{summary.build_records} build records",
        ]
        if summary.leftovers:
            parts.append(f"{summary.leftovers} leftovers of killed processes (containers included)")
        freed = human_bytes(sum(report.freed.values()))
        click.echo(f"removed {', '.join(parts[:-1])} and {parts[-1]}, {freed} freed")
        return
    _print_report(report, summary.leftovers, dry_run)


def _policy(
    keep_storage: str | None, until: str | None, filters: tuple[str, ...], containers: bool
) -> PrunePolicy:
    """The prune policy the options ask for."""
    from dockyard.check.policy import parse_bytes
    from dockyard.ci.pipeline import parse_duration
    from dockyard.disk.prune import PRUNABLE, PrunePolicy

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
        return PrunePolicy(
            frozenset(kinds) if kinds else None,
            parse_duration(until) if until else None,
            parse_bytes(keep_storage) if keep_storage else None,
            containers=containers or "containers" in kinds,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def _print_report(report: PruneReport, leftovers: int, dry_run: bool) -> None:
    """What a prune with a policy (or a dry run) removed, per kind."""
    from dockyard.disk.prune import PRUNABLE

    verb = "would remove" if dry_run else "removed"
    if dry_run:
        for kind, items in report.removed.items():
            for item in items:
                click.echo(f"{verb} {kind} {item.name} {human_bytes(item.size)}")
    for item in report.spared:
        click.echo(f"kept {item.kind} {item.name}: in use")
    for kind in PRUNABLE:
        if kind in report.removed:
            count = len(report.removed[kind])
            click.echo(f"{kind}: {verb} {count}, {human_bytes(report.freed[kind])}")
    total = sum(report.freed.values())
    tail = f", {leftovers} leftovers of killed processes" if leftovers else ""
    click.echo(f"total: {human_bytes(total)} {'would be ' if dry_run else ''}freed{tail}")
