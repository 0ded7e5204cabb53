"""``dockyard registry serve|export|import|gc``: run and maintain a registry server."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

_CONFIG_HELP = "Settings file (TOML, or YAML by suffix); flags override it."


def default_root() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/dockyard-registry")
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "dockyard-registry"


def _load(root: Path | None, config_file: Path | None, **flags: Any):
    """The server settings: defaults, then the config file, then flags that were given."""
    from dockyard.registry.server import config as cfg

    settings = cfg.ServerConfig(root=default_root())
    if config_file is not None:
        settings = cfg.from_document(cfg.load_file(config_file), str(config_file), settings)
    upstreams = flags.pop("upstreams", ())
    if upstreams:
        parsed = [cfg.parse_upstream(u) for u in upstreams]
        given = {u.name for u in parsed}
        settings = replace(
            settings,
            upstreams=tuple(u for u in settings.upstreams if u.name not in given) + tuple(parsed),
        )
    allowed = flags.pop("allow_upstreams", ())
    if allowed:
        flags["allow_upstreams"] = tuple(dict.fromkeys((*settings.allow_upstreams, *allowed)))
    changes = {k: v for k, v in flags.items() if v is not None and v is not False}
    if root is not None:
        changes["root"] = root
    return cfg.check(replace(settings, **changes))


def _root_option(f):
    return click.option(
        "--root",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="DOCKYARD_REGISTRY_ROOT",
        help="Registry storage directory [env DOCKYARD_REGISTRY_ROOT; default "
        "/var/lib/dockyard-registry as root].",
    )(f)


def _config_option(f):
    return click.option(
        "--config",
        "config_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=_CONFIG_HELP,
    )(f)


def _storage_options(f):
    """``--storage s3://BUCKET/PREFIX`` and its endpoint and region (instead of --root)."""
    f = click.option("--s3-region", help="Region of the S3 bucket [AWS_REGION].")(f)
    f = click.option(
        "--s3-endpoint",
        metavar="URL",
        help="S3-compatible endpoint (SeaweedFS, MinIO, Ceph) [AWS's; AWS_ENDPOINT_URL].",
    )(f)
    return click.option(
        "--storage",
        metavar="s3://BUCKET/PREFIX",
        help="Keep everything in an S3-compatible object store instead of --root; several "
        "replicas may share it. Credentials: the usual AWS environment variables and files.",
    )(f)


def _upstream_option(f):
    return click.option(
        "--upstream",
        "upstreams",
        multiple=True,
        metavar="NAME=URL",
        help="Mirror URL's registry under NAME/ (repeatable): quay=https://quay.io.",
    )(f)


@click.group()
def registry() -> None:
    """A registry server: OCI distribution API, pull-through cache, offline bundles, GC.

    The pull-through cache serves many upstreams."""


@registry.command()
@click.option("--addr", help="HOST:PORT to listen on [default 127.0.0.1:5000].")
@_root_option
@_storage_options
@_upstream_option
@_config_option
@click.option(
    "--htpasswd",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Require users from this file (bcrypt entries: htpasswd -B).",
)
@click.option(
    "--auth",
    "auth_mode",
    type=click.Choice(["basic", "token"]),
    help="With --htpasswd: basic auth, or tokens from our /token realm.",
)
@click.option("--token-realm", help="Realm URL to announce in token mode [default: <this>/token].")
@click.option(
    "--token-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Token mode: the signing key file (64 hex digits, mode 600), the same on every "
    "replica; needed with --storage [default: <root>/auth/token.key, made if missing].",
)
@click.option("--anonymous-pull", is_flag=True, help="With --htpasswd: let anyone pull.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--read-only", is_flag=True, help="Refuse pushes and deletes.")
@click.option(
    "--redirect",
    is_flag=True,
    help="With --storage: answer blob GETs with a redirect (307) to a pre-signed URL, "
    "so clients download from the object store, not through the registry.",
)
@click.option("--tag-ttl", type=float, help="Seconds a mirrored tag is served before re-checking.")
@click.option(
    "--allow-upstream",
    "allow_upstreams",
    multiple=True,
    metavar="HOST",
    help="Let clients pull through HOST with ?ns=HOST (containerd's mirror parameter), "
    "cached under ns/HOST/ (repeatable; '*': any host).",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
def serve(root: Path | None, config_file: Path | None, **flags: Any) -> None:
    """Serve the distribution API until interrupted."""
    from dockyard.registry.server import serve as run

    run(_load(root, config_file, **flags))


@registry.command("export")
@_root_option
@_storage_options
@_config_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--repo",
    "patterns",
    multiple=True,
    metavar="PATTERN",
    help="Only repositories matching this glob (local or upstream name).",
)
def export_(
    root: Path | None,
    config_file: Path | None,
    output: Path,
    patterns: tuple[str, ...],
    **where: Any,
):
    """Write every stored and cached image to one OCI archive (an offline bundle)."""
    from dockyard.registry.server.backend import open_storage
    from dockyard.registry.server.bundle import export

    settings = _load(root, config_file, **where)
    storage = open_storage(settings)
    done = export(storage, output, patterns, say=lambda m: click.echo(m, err=True))
    for image in done:
        click.echo(
            f"exported {image.name}:{image.tag}"
            if image.tag
            else f"exported {image.name}@{image.digest}"
        )
    click.echo(f"{len(done)} image(s) written to {output}")


@registry.command("import")
@_root_option
@_storage_options
@_config_option
@_upstream_option
@click.argument("archive", metavar="ARCHIVE|LAYOUT", type=click.Path(exists=True, path_type=Path))
def import_(
    root: Path | None, config_file: Path | None, upstreams, archive: Path, **where: Any
) -> None:
    """Load an OCI archive or an OCI layout directory into the registry.

    The archive may come from `registry export`, or be any oci-archive."""
    from dockyard.registry.server.backend import open_storage
    from dockyard.registry.server.bundle import import_archive

    settings = _load(root, config_file, upstreams=upstreams, **where)
    hosts = {u.canonical_host: u.name for u in settings.upstreams}
    storage = open_storage(settings)
    loaded = import_archive(storage, archive, hosts, say=lambda m: click.echo(m, err=True))
    for image in loaded:
        suffix = f":{image.tag}" if image.tag else f"@{image.digest}"
        click.echo(f"imported {image.repository}{suffix}")
    click.echo(f"{len(loaded)} image(s) imported into {storage.where}")


@registry.command()
@_root_option
@_storage_options
@_config_option
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option("--grace", type=float, help="Keep unreferenced blobs younger than this (seconds).")
def gc(
    root: Path | None, config_file: Path | None, dry_run: bool, grace: float | None, **where: Any
) -> None:
    """Delete blobs no manifest refers to (safe while the server runs)."""
    from dockyard.registry.server.backend import open_storage
    from dockyard.registry.server.gc import collect

    settings = _load(root, config_file, **where)
    result = collect(
        open_storage(settings),
        grace=settings.gc_grace if grace is None else grace,
        upload_max_age=settings.upload_max_age,
        dry_run=dry_run,
        report=click.echo,
    )
    verb = "would free" if dry_run else "freed"
    click.echo(
        f"{len(result.removed)} blob(s), {verb} {result.freed} bytes; "
        f"{len(result.kept_young)} unreferenced blob(s) within the grace period kept; "
        f"{len(result.uploads_removed)} abandoned upload(s)"
    )
