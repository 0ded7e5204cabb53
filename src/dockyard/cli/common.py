"""What several commands share: the store, reference parsing, the TLS option, output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dockyard import reference

if TYPE_CHECKING:
    from dockyard.cli.group import Settings
    from dockyard.oci.home import ImageSource
    from dockyard.store import Store
    from dockyard.transfer.transports import Location

F = TypeVar("F", bound=Callable[..., Any])


def settings() -> Settings:
    return click.get_current_context().find_root().obj


def open_store() -> Store:
    from dockyard.store import Store

    return Store(settings().root)


def parse_ref(text: str) -> reference.Reference:
    return reference.parse(text)


def tls_option(f: F) -> F:
    """``--tls-verify=false``: talk plain HTTP / skip TLS checks for a non-loopback host."""
    return click.option(
        "--tls-verify",
        type=click.BOOL,
        default=None,
        help="Require HTTPS with verified certificates (default: yes, except on loopback).",
    )(f)


def platform_option(f: F) -> F:
    return click.option(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="Image to take from a multi-platform index (default: the host's).",
    )(f)


def progress_option(f: F) -> F:
    return click.option(
        "--progress",
        type=click.Choice(["auto", "tty", "plain", "quiet"]),
        default="auto",
        show_default=True,
        help="How to show transfer progress (on stderr).",
    )(f)


def parse_platform(text: str | None):
    if not text:
        return None
    from dockyard.oci.descriptor import Platform

    return Platform.parse(text)


def open_source(location: Location, tls_verify: bool | None = None) -> ImageSource:
    from dockyard.transfer.transports import open_source as _open

    return _open(location, store_root=settings().root, tls_verify=tls_verify)


def print_table(
    rows: Sequence[Sequence[object]], style: Callable[[int, str], str] | None = None
) -> None:
    """Print ``rows`` (the header first) in columns two spaces apart, no trailing blanks.

    ``style(column, padded cell)`` may colour the cells below the header."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for number, row in enumerate(cells):
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        if style and number:
            padded = [style(column, cell) for column, cell in enumerate(padded)]
        click.echo("  ".join(padded).rstrip())


def print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def parse_pairs(values: tuple[str, ...], option: str, *, bare: str = "error") -> dict[str, str]:
    """``KEY=VALUE`` option values as a dict, later ones winning; the value may hold ``=``.

    A bare ``KEY`` is refused (``bare="error"``), an empty value (``"empty"``, as
    docker's ``--label``), or the environment variable ``KEY``'s value, left out when it
    is unset (``"environment"``, as docker's ``--build-arg`` and ``-e``: an unset build
    arg keeps the Dockerfile's ``ARG KEY=default``).
    """
    import os

    out: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not key or key != key.strip():
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE", param_hint=option)
        if sep:
            out[key] = rest
        elif bare == "empty":
            out[key] = ""
        elif bare == "environment":
            if key in os.environ:
                out[key] = os.environ[key]
        else:
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE", param_hint=option)
    return out


def conversion_options(f: F) -> F:
    """``--compression-format`` and ``--preserve-digests``, for commands that write images."""
    f = click.option(
        "--preserve-digests",
        is_flag=True,
        help="Keep every byte (no OCI conversion, no compression); fail where the "
        "destination cannot hold the image so.",
    )(f)
    return click.option(
        "--compression-format",
        type=click.Choice(["gzip", "zstd", "none"]),
        default=None,
        help="Write every layer in this compression (default: keep; a registry gets "
        "plain-tar layers gzipped).",
    )(f)
