"""Entry point: a click group whose subcommands are imported only when invoked.

``dockyard --help`` must start fast, so no command module (and none of httpx, isal...)
is imported until a command actually runs.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

# command name -> (module, attribute, one-line help); the module is imported on first use.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "build": ("dockyard.cli.build", "build", "Build an image from a Dockerfile, no daemon."),
    "history": ("dockyard.cli.build", "history", "Show the layers of an image and what made them."),
    "pull": ("dockyard.cli.images", "pull", "Pull an image from a registry into the local store."),
    "push": ("dockyard.cli.images", "push", "Push an image from the local store to a registry."),
    "images": ("dockyard.cli.images", "images", "List images in the local store."),
    "inspect": ("dockyard.cli.images", "inspect", "Show an image's manifest and config as JSON."),
    "tag": ("dockyard.cli.images", "tag", "Give a stored image another name."),
    "rmi": ("dockyard.cli.images", "rmi", "Remove image names (blobs stay until prune)."),
    "prune": ("dockyard.cli.images", "prune", "Delete blobs and snapshots no image needs."),
    "save": ("dockyard.cli.archives", "save", "Write images to a docker- or oci-archive."),
    "load": ("dockyard.cli.archives", "load", "Read a docker- or oci-archive into the store."),
    "copy": ("dockyard.cli.archives", "copy", "Copy an image between any two transports."),
    "export": ("dockyard.cli.archives", "export", "Flatten an image into a rootfs directory."),
    "import": ("dockyard.cli.archives", "import_", "Make a directory a one-layer image."),
    "manifest": ("dockyard.cli.plumbing", "manifest", "Get or put raw manifests."),
    "blob": ("dockyard.cli.plumbing", "blob", "Check, fetch or upload single blobs."),
    "layer": ("dockyard.cli.plumbing", "layer", "Pull one layer into a dir, or push a dir as one."),
    "login": ("dockyard.cli.auth", "login", "Store credentials for a registry."),
    "logout": ("dockyard.cli.auth", "logout", "Forget the credentials for a registry."),
    "run": ("dockyard.cli.run", "run", "Run a command in a new container from an image."),
    "watch": ("dockyard.cli.watch", "watch", "Rebuild (and rerun) whenever the context changes."),
    "container": (
        "dockyard.cli.containers",
        "container",
        "Working containers: create, run, mount, diff, commit, ls, rm.",
    ),
    "registry": ("dockyard.cli.registry", "registry", "Run a registry (mirror, gc, bundles)."),
    "ci": ("dockyard.cli.ci", "ci", "Run a pipeline file locally; list, show and prune past runs."),
}


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
@click.version_option(package_name="dockyard", prog_name="dockyard")
@click.pass_context
def cli(ctx: click.Context, root: Path | None, debug: bool) -> None:
    """Daemonless container images: pull, push, copy, save, load, inspect and build."""
    ctx.obj = Settings(root, debug)


def main() -> None:
    # ``import httpx`` also imports httpx's own command line (click, pygments and rich,
    # where installed): 15-90 ms on every registry command, for code we never run. An
    # entry of None makes that import fail at once, and httpx carries on without it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]
    debug = "--debug" in sys.argv or bool(os.environ.get("DOCKYARD_DEBUG"))
    try:
        sys.exit(cli.main(standalone_mode=False) or 0)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        from dockyard.errors import DockyardError

        if debug or not isinstance(e, DockyardError | OSError):
            raise
        click.echo(f"dockyard: error: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
