"""Plumbing for scripts: raw manifests, single blobs, single layers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from dockyard.cli.common import parse_platform, parse_ref, platform_option, tls_option

if TYPE_CHECKING:
    from dockyard.oci.home import ImageSource


def _client(ref, tls_verify: bool | None):
    from dockyard.registry.client import client_for

    return client_for(ref, tls_verify=tls_verify)


@click.group()
def manifest() -> None:
    """Get or put raw manifests in a registry."""


@manifest.command("get")
@click.argument("image")
@tls_option
def manifest_get(image: str, tls_verify: bool | None) -> None:
    """Print IMAGE's manifest exactly as the registry sent it."""
    ref = parse_ref(image)
    raw = _client(ref, tls_verify).get_manifest(ref.repository, ref.identifier)
    sys.stdout.buffer.write(raw.data)


@manifest.command("put")
@click.argument("image")
@click.argument("file", type=click.File("rb"))
@tls_option
def manifest_put(image: str, file, tls_verify: bool | None) -> None:
    """Upload the manifest document FILE ('-' for stdin) as IMAGE; print its digest."""
    from dockyard.oci import manifest as manifests
    from dockyard.oci.home import RawManifest

    ref = parse_ref(image)
    data = file.read()
    parsed = manifests.parse(data, where=file.name)
    digest = _client(ref, tls_verify).put_manifest(
        ref.repository, ref.identifier, RawManifest(data, parsed.media_type)
    )
    click.echo(digest)


@click.group()
def blob() -> None:
    """Check, fetch or upload single blobs in a registry repository."""


@blob.command("has")
@click.argument("repository")
@click.argument("digest")
@tls_option
def blob_has(repository: str, digest: str, tls_verify: bool | None) -> None:
    """Exit 0 if REPOSITORY holds blob DIGEST, 1 if not."""
    from dockyard.oci import digest as digests
    from dockyard.reference import parse_repository

    ref = parse_repository(repository)
    if not _client(ref, tls_verify).has_blob(ref.repository, digests.validate(digest)):
        sys.exit(1)


@blob.command("get")
@click.argument("repository")
@click.argument("digest")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@tls_option
def blob_get(repository: str, digest: str, output: Path, tls_verify: bool | None) -> None:
    """Download blob DIGEST to OUTPUT, verifying it; nothing is left if it does not match."""
    from dockyard.reference import parse_repository
    from dockyard.transfer.blobs import download_blob

    ref = parse_repository(repository)
    download_blob(_client(ref, tls_verify), ref.repository, digest, output)


@blob.command("put")
@click.argument("repository")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@tls_option
def blob_put(repository: str, file: Path, tls_verify: bool | None) -> None:
    """Upload FILE as a blob of REPOSITORY; print its digest."""
    from dockyard.reference import parse_repository
    from dockyard.transfer.blobs import upload_file

    ref = parse_repository(repository)
    click.echo(upload_file(_client(ref, tls_verify), ref.repository, file).digest)


@click.group()
def layer() -> None:
    """Pull one layer of an image into a directory, or push a directory as a layer."""


@layer.command("pull")
@click.argument("image")
@click.argument("index", type=int)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@platform_option
@tls_option
def layer_pull(
    image: str, index: int, directory: Path, platform: str | None, tls_verify: bool | None
) -> None:
    """Unpack layer INDEX (0 = bottom, -1 = top) of IMAGE into DIRECTORY."""
    from dockyard.layers import apply_layer, open_decompressed
    from dockyard.registry.client import RegistrySource
    from dockyard.transfer.resolve import resolve_image

    ref = parse_ref(image)
    registry = RegistrySource(_client(ref, tls_verify), ref)
    source = cast("ImageSource", registry)  # its blobs are verifying readers: read() only
    image_manifest = resolve_image(source, platform=parse_platform(platform))
    try:
        desc = image_manifest.layers[index]
    except IndexError:
        raise click.UsageError(
            f"{ref} has {len(image_manifest.layers)} layers, no layer {index}"
        ) from None
    directory.mkdir(parents=True, exist_ok=True)
    with source.open_blob(desc) as stream:
        layer_stream = open_decompressed(stream)
        for warning in apply_layer(layer_stream, directory, name=f"layer {desc.digest}"):
            click.echo(f"warning: {warning}", err=True)
    click.echo(desc.digest)


@layer.command("push")
@click.argument("repository")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip", show_default=True
)
@tls_option
def layer_push(repository: str, directory: Path, compression: str, tls_verify: bool | None) -> None:
    """Pack DIRECTORY as one layer and upload it to REPOSITORY.

    Prints the blob's digest and the layer's diff ID (for an image config).
    """
    from dockyard.reference import parse_repository
    from dockyard.transfer.blobs import push_directory

    ref = parse_repository(repository)
    packed = push_directory(
        _client(ref, tls_verify),
        ref.repository,
        directory,
        None if compression == "none" else compression,
    )
    click.echo(f"{packed.digest} {packed.diff_id} {packed.size} {packed.media_type}")
