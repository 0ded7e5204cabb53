"""``dockyard capture``: images pulled and saved together as one offline bundle."""

from __future__ import annotations

from pathlib import Path

import click

from dockyard.cli.common import open_store, parse_platform, parse_ref, platform_option, tls_option


@click.command()
@click.argument("sources", metavar="PATH...|IMAGE...", nargs=-1, required=True)
@click.option(
    "--from-manifests",
    is_flag=True,
    help="The arguments are Kubernetes manifests and values.yaml files, or directories "
    "of them: capture every image they name.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    required=True,
    metavar="FILE|DIR/",
    help="The oci-archive to write (an OCI layout: a directory, or a path ending in /).",
)
@click.option(
    "--keep-going",
    is_flag=True,
    help="Capture what was found even if some files or image fields could not be read.",
)
@platform_option
@tls_option
def capture(
    sources: tuple[str, ...],
    from_manifests: bool,
    output: str,
    keep_going: bool,
    platform: str | None,
    tls_verify: bool | None,
) -> None:
    """Pull images and save them, by name, to one archive.

    `dockyard load` and `dockyard registry import` read it on a site with no registry access.

    \b
    dockyard capture --from-manifests deploy/ values.yaml -o bundle.tar
    dockyard capture docker.io/library/nginx:1.27 -o bundle.tar
    """
    from dockyard.transfer.capture import save_bundle
    from dockyard.transfer.pull import pull

    if from_manifests:
        refs = _found_in_manifests([Path(s) for s in sources], keep_going)
    else:
        refs = list(dict.fromkeys(parse_ref(s) for s in sources))
    store = open_store()
    chosen = parse_platform(platform)
    images = []
    for ref in refs:
        click.echo(f"pulling {ref}", err=True)
        pull(ref, store=store, platform=chosen, tls_verify=tls_verify)
        images.append((ref, store.resolve(ref)))
    say = lambda line: click.echo(line, err=True)  # noqa: E731
    for image in save_bundle(store, images, output, platform=chosen, note=say):
        click.echo(f"captured {image.name} ({image.digest})")
    click.echo(f"{len(images)} image(s) written to {output}")


def _found_in_manifests(paths: list[Path], keep_going: bool) -> list:
    """The images the files name, each listed with where it was found; problems listed
    and, without ``keep_going``, fatal before anything is pulled."""
    from dockyard.transfer.manifest_images import scan_paths

    scan = scan_paths(paths)
    for found in scan.images:
        click.echo(f"found {found.ref} at {found.file}:{found.line}")
    for problem in scan.problems:
        click.echo(f"{'warning' if keep_going else 'error'}: {problem}", err=True)
    if scan.problems and not keep_going:
        raise click.ClickException(
            f"{len(scan.problems)} problem(s) in the manifests (--keep-going captures the rest)"
        )
    if not scan.images:
        raise click.ClickException("no image found in " + ", ".join(map(str, paths)))
    return scan.refs()
