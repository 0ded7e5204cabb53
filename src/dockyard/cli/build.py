"""``dockyard build`` and ``dockyard history``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dockyard.cli.common import (
    open_store,
    parse_pairs,
    parse_platform,
    parse_ref,
    platform_option,
    print_table,
)
from dockyard.cli.tables import human_bytes

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from dockyard.builder.builder import BuildOptions, BuildResult
    from dockyard.builder.outputs import Output
    from dockyard.oci.config import HistoryEntry
    from dockyard.oci.descriptor import Descriptor
    from dockyard.store import Store


def _secrets(values: tuple[str, ...]) -> dict[str, bytes]:
    """``id=ID,src=FILE`` or ``id=ID,env=VAR`` (``src`` defaults to ``id``)."""
    out = {}
    for value in values:
        fields = parse_pairs(tuple(value.split(",")), "--secret")
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


OUTPUT_TYPES = {
    "store": "the local store (the default)",
    "registry": "push every -t name",
    "oci": "an oci-archive tarball at dest (a layout directory with tar=false)",
    "docker": "a docker-archive tarball at dest",
    "oci-archive": "= oci",
    "docker-archive": "= docker",
    "local": "the image's filesystem, flattened, into the directory dest",
}
OUTPUT_HELP = (
    "Where the image goes: type=TYPE[,dest=PATH][,tar=false]; dest=- writes a tarball to "
    "stdout. Types: " + "; ".join(f"{name}: {what}" for name, what in OUTPUT_TYPES.items())
)


def parse_output(value: str | None) -> Output:
    """``type=TYPE,dest=PATH[,tar=BOOL]``, as ``docker buildx build --output`` takes it."""
    from dockyard.builder.outputs import Output

    if not value:
        return Output("store")
    fields = parse_pairs(tuple(value.split(",")), "--output")
    kind = fields.pop("type", "store")
    if kind not in OUTPUT_TYPES:
        raise click.BadParameter(
            f"unknown output type {kind!r} (one of {', '.join(OUTPUT_TYPES)})",
            param_hint="--output",
        )
    dest = fields.pop("dest", None)
    tar = fields.pop("tar", "true").lower()
    if fields or tar not in ("true", "false") or (tar == "false" and kind != "oci"):
        raise click.BadParameter(f"{value!r}: unknown or bad option", param_hint="--output")
    if kind in ("store", "registry"):
        return Output(kind)
    if not dest:
        raise click.BadParameter(f"type={kind} needs dest=PATH", param_hint="--output")
    if kind == "oci":
        kind = "oci" if tar == "false" else "oci-archive"
    elif kind == "docker":
        kind = "docker-archive"
    if dest == "-" and kind not in ("oci-archive", "docker-archive"):
        raise click.BadParameter(
            f"dest=- needs a tarball output, not {kind}", param_hint="--output"
        )
    return Output(kind, dest)


@click.command()
@click.argument("context", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-t", "--tag", "tags", multiple=True, help="Name the image (repeatable).")
@click.option("-f", "--file", "dockerfile", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="KEY[=VALUE]",
    help="Set an ARG; a bare KEY takes the environment's value, if set.",
)
@click.option("--target", help="Build up to this stage.")
@click.option("--secret", "secrets", multiple=True, metavar="id=ID,src=FILE|env=VAR")
@click.option("--no-cache", is_flag=True, help="Execute every step, cache mounts empty.")
@click.option("--cache-from", multiple=True, metavar="REF", help="Import a cache image.")
@click.option("--cache-to", metavar="REF", help="Export the cache of this build.")
@click.option("--output", "output", metavar="type=TYPE,dest=PATH", help=OUTPUT_HELP)
@click.option("--push", is_flag=True, help="Push every -t name.")
@click.option(
    "--capture",
    type=click.Path(),
    metavar="FILE|DIR/",
    help="Also save every image the build read (FROM, COPY --from, RUN --mount=from) and "
    "the built image, by name, to one oci-archive (or OCI layout: a directory or a path "
    "ending in /) for `dockyard load` or `dockyard registry import` on an offline site.",
)
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
    capture: str | None,
    labels: tuple[str, ...],
    network: str,
    entitlements: tuple[str, ...],
    platform: str | None,
    progress: str,
    quiet: bool,
) -> None:
    """Build the Dockerfile in CONTEXT into an image, with no daemon."""
    import time

    from dockyard.builder.builder import BuildOptions
    from dockyard.builder.outputs import build as build_image

    target_output = parse_output(output)
    if target_output.to_stdout and sys.stdout.isatty():
        raise click.UsageError("dest=- would write a tarball to a terminal: redirect stdout")
    if (push or target_output.kind == "registry") and not tags:
        raise click.UsageError("--push needs at least one -t name")
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or None
    if epoch is not None and not (epoch.isascii() and epoch.isdigit()):
        raise click.UsageError(f"SOURCE_DATE_EPOCH={epoch!r}: seconds since 1970 expected")
    options = BuildOptions(
        context=context,
        dockerfile=dockerfile,
        tags=[parse_ref(t) for t in tags],
        build_args=parse_pairs(build_args, "--build-arg", bare="environment"),
        target=target,
        secrets=_secrets(secrets),
        no_cache=no_cache,
        labels=parse_pairs(labels, "--label", bare="empty"),
        network=network,
        allow_network_host="network.host" in entitlements,
        platform=parse_platform(platform),
        source_date_epoch=int(epoch) if epoch is not None else None,
        cache_from=list(cache_from),
        cache_to=cache_to,
    )
    silent = quiet or progress == "quiet"
    started = time.monotonic()
    store = open_store()
    result = build_image(
        options,
        store=store,
        outputs=[target_output],
        push=push,
        log=None if silent else lambda line: click.echo(line, err=True),
    )
    if capture is not None:
        _capture(store, result, options, capture, platform)
    stdout_free = not target_output.to_stdout  # else it holds the tarball alone
    if quiet:
        if stdout_free:
            click.echo(result.image_id)
        return
    click.echo(
        f"built {result.digest} (image ID {result.image_id[7:19]}) in "
        f"{time.monotonic() - started:.2f}s: {result.executed} steps run, {result.cached} cached",
        err=True,
    )
    for ref in options.tags if stdout_free else ():
        click.echo(str(ref))


def _capture(
    store: Store, result: BuildResult, options: BuildOptions, output: str, platform: str | None
) -> None:
    """Save the images the build read and the built image (by each -t, else by digest)
    to ``output``, and list them on stderr."""
    from dockyard.builder.outputs import BUILT_REPOSITORY
    from dockyard.transfer.capture import save_bundle

    by_digest = BUILT_REPOSITORY.with_digest(result.digest)
    built = store.resolve(by_digest)
    names = options.tags or [by_digest]
    images = [*result.images.items(), *((name, built) for name in names)]
    say = lambda line: click.echo(line, err=True)  # noqa: E731
    saved = save_bundle(store, images, output, platform=parse_platform(platform), note=say)
    for image in saved:
        say(f"captured {image.name} ({image.digest})")
    say(f"captured {len(saved)} image(s) to {output}")


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
    from dockyard.oci.config import ImageConfig

    config = ImageConfig(store.read_config(manifest))
    layers = iter(manifest.layers)
    rows = [("CREATED", "CREATED BY", "SIZE", "COMMENT")]
    for entry, size in reversed(_history_with_layers(config.history, layers)):
        created_by = entry.created_by
        if not no_trunc and len(created_by) > 60:
            created_by = created_by[:57] + "..."
        rows.append((entry.created[:19], created_by, size, entry.comment))
    print_table(rows)


def _history_with_layers(
    history: Sequence[HistoryEntry], layers: Iterator[Descriptor]
) -> list[tuple[HistoryEntry, str]]:
    """Each history entry with the size of the layer it made (``0 B`` for none)."""
    out = []
    for entry in history:
        size = "0 B"
        if not entry.empty_layer:
            layer = next(layers, None)
            size = human_bytes(layer.size) if layer else "?"
        out.append((entry, size))
    return out
