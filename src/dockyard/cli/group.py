"""The click group behind the command line: its options and its commands.

The commands are imported on first use (see :data:`dockyard.cli.main.COMMANDS`).

Kept apart from :mod:`dockyard.cli.main` so that ``dockyard --help`` can answer
without importing click (see :func:`dockyard.cli.main.main`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import click

from dockyard.cli.main import COMMANDS


@dataclass
class Settings:
    """Options every command may need, from the top-level group."""

    root: Path | None  # None: the store's default root
    debug: bool


class LazyGroup(click.Group):
    """A group that lists commands from a table and imports one only to run it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        module, attribute, _ = entry
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands from the table, so ``--help`` imports none of them."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry[2]) for name, entry in sorted(COMMANDS.items())])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DOCKYARD_ROOT",
    help="Local store directory [env DOCKYARD_ROOT; default /var/lib/dockyard as root].",
)
@click.option("--debug", is_flag=True, envvar="DOCKYARD_DEBUG", help="Show tracebacks.")
@click.option(
    "--registry-mirror",
    "registry_mirrors",
    multiple=True,
    metavar="HOST=URL",
    envvar="DOCKYARD_REGISTRY_MIRROR",
    help="Pull HOST's images from the mirror URL first (repeatable; before registries.toml's "
    "mirrors) [env DOCKYARD_REGISTRY_MIRROR, space-separated].",
)
@click.version_option(package_name="dockyard", prog_name="dockyard")
@click.pass_context
def cli(
    ctx: click.Context, root: Path | None, debug: bool, registry_mirrors: tuple[str, ...]
) -> None:
    """Daemonless container images: pull, push, copy, save, load, inspect and build."""
    ctx.obj = Settings(root, debug)
    if registry_mirrors:
        from dockyard.errors import RegistryError
        from dockyard.registry.client import config as registries

        try:
            registries.use_command_line_mirrors(registry_mirrors)
        except RegistryError as e:
            raise click.BadParameter(str(e), param_hint="--registry-mirror") from None
