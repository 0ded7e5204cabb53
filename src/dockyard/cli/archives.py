"""Commands that move images between homes: save, load, copy, export, import."""

from __future__ import annotations

from pathlib import Path

import click

from dockyard.cli.common import (
    conversion_options,
    open_source,
    open_store,
    parse_pairs,
    parse_platform,
    parse_ref,
    platform_option,
    progress_option,
    settings,
    tls_option,
)
from dockyard.cli.progress import progress_display


@click.command()
@click.argument("image_refs", metavar="IMAGE...", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--format",
    "archive_format",
    type=click.Choice(["docker-archive", "oci-archive"]),
    default="docker-archive",
    show_default=True,
)
@platform_option
@conversion_options
def save(
    image_refs: tuple[str, ...],
    output: Path,
    archive_format: str,
    platform: str | None,
    compression_format: str | None,
    preserve_digests: bool,
) -> None:
    """Write stored images to one archive that docker, podman and skopeo load.

    An oci-archive gets OCI media types (a Docker image is converted, as skopeo does)
    unless --preserve-digests.
    """
    from dockyard.layout.docker_archive import DockerArchiveWriter
    from dockyard.layout.oci_archive import OCIArchiveWriter
    from dockyard.transfer.convert import plan
    from dockyard.transfer.copy import copy_image

    conversion = plan(
        archive_format, compression_format=compression_format, preserve_digests=preserve_digests
    )
    store = open_store()
    refs = [parse_ref(text) for text in image_refs]
    docker = archive_format == "docker-archive"
    writer = DockerArchiveWriter(output) if docker else OCIArchiveWriter(output)
    with writer:
        for ref in refs:
            destination = (
                writer.destination(ref)
                if isinstance(writer, DockerArchiveWriter)
                else writer.destination(str(ref))
            )
            copy_image(
                store.source(ref),
                destination,
                platform=parse_platform(platform),
                all_platforms=not docker and platform is None,
                conversion=conversion,
            )
        writer.commit()
    click.echo(f"saved {len(refs)} image(s) to {output}")


@click.command()
@click.option(
    "-i",
    "--input",
    "archive",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="A docker-archive or oci-archive file, or an OCI layout directory.",
)
def load(archive: Path) -> None:
    """Read every image of a docker-archive, oci-archive or OCI layout into the store."""
    from dockyard.transfer.load import load_archive

    for ref, digest in load_archive(archive, open_store()):
        click.echo(f"Loaded image: {ref} ({digest})")


@click.command()
@click.argument("source")
@click.argument("destination")
@click.option("--all", "all_platforms", is_flag=True, help="Copy every platform of an index.")
@platform_option
@tls_option
@click.option(
    "--src-tls-verify", type=click.BOOL, default=None, help="--tls-verify for SOURCE only."
)
@click.option(
    "--dest-tls-verify", type=click.BOOL, default=None, help="--tls-verify for DESTINATION only."
)
@progress_option
@conversion_options
def copy(
    source: str,
    destination: str,
    all_platforms: bool,
    platform: str | None,
    tls_verify: bool | None,
    src_tls_verify: bool | None,
    dest_tls_verify: bool | None,
    progress: str,
    compression_format: str | None,
    preserve_digests: bool,
) -> None:
    """Copy an image from SOURCE to DESTINATION, any transport to any.

    \b
    Transports: docker://REF  oci:DIR[:TAG]  oci-archive:FILE[:TAG]
                docker-archive:FILE[:REF]  local:REF (the store; also a bare REF)

    An OCI layout or archive gets OCI media types (a Docker image is converted, as
    skopeo does) and a registry compressed layers, unless --preserve-digests.
    """
    from dockyard.transfer.copy import copy as copy_image
    from dockyard.transfer.transports import parse_location

    src_location = parse_location(source)
    dest_location = parse_location(destination)
    with progress_display(progress) as display:
        result = copy_image(
            src_location,
            dest_location,
            store=settings().root,
            platform=parse_platform(platform),
            all_platforms=all_platforms,
            tls_verify=tls_verify,
            src_tls_verify=src_tls_verify,
            dest_tls_verify=dest_tls_verify,
            compression_format=compression_format,
            preserve_digests=preserve_digests,
            progress=display,
        )
    click.echo(f"{dest_location}: {result.digest}")


@click.command()
@click.argument("image")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@platform_option
@tls_option
def export(image: str, directory: Path, platform: str | None, tls_verify: bool | None) -> None:
    """Flatten IMAGE's layers into DIRECTORY (whiteouts applied).

    IMAGE is a store reference or any transport (docker://REF, oci:DIR:TAG, ...).
    """
    from dockyard.transfer.export import export_rootfs
    from dockyard.transfer.transports import parse_location

    if directory.exists() and any(directory.iterdir()):
        raise click.UsageError(f"{directory} is not empty")
    source = open_source(parse_location(image), tls_verify)
    for warning in export_rootfs(source, directory, parse_platform(platform)):
        click.echo(f"warning: {warning}", err=True)


@click.command(name="import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("image")
@click.option(
    "--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip", show_default=True
)
@click.option("--cmd", "command", multiple=True, help="The image's CMD, one argument per option.")
@click.option("--env", multiple=True, metavar="KEY=VALUE", help="An environment variable.")
def import_(
    directory: Path, image: str, compression: str, command: tuple[str, ...], env: tuple[str, ...]
) -> None:
    """Make DIRECTORY the single layer of a new image named IMAGE in the store."""
    from dockyard.transfer.from_directory import import_directory

    ref = parse_ref(image)
    digest = import_directory(
        open_store(),
        directory,
        ref,
        compression=None if compression == "none" else compression,
        cmd=list(command) or None,
        env=[f"{k}={v}" for k, v in parse_pairs(env, "--env").items()],
    )
    click.echo(f"{ref}: {digest}")
