"""Entry point: a click group (:mod:`.group`) whose subcommands are imported only when invoked.

``dockyard --help`` must start fast, so no command module (and none of httpx, isal...)
is imported until a command actually runs, and the top-level help itself is written
without importing click when the terminal is wide enough for its one layout
(:data:`HELP_HEAD`, checked against click's rendering by a test). ``dockyard images``
(with ``-q``/``--digests`` only) runs without click too (:func:`fast_images`): importing
click costs as much as Python's own start.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys

TYPE_CHECKING = False  # not typing's: the help's path imports no more than it needs
if TYPE_CHECKING:
    from typing import NoReturn

# command name -> (module, attribute, one-line help); the module is imported on first use.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "build": ("dockyard.cli.build", "build", "Build an image from a Dockerfile, no daemon."),
    "history": ("dockyard.cli.build", "history", "Show the layers of an image and what made them."),
    "pull": ("dockyard.cli.images", "pull", "Pull an image from a registry into the local store."),
    "push": ("dockyard.cli.images", "push", "Push an image from the local store to a registry."),
    "images": ("dockyard.cli.images", "images", "List images in the local store."),
    "inspect": ("dockyard.cli.images", "inspect", "Show an image's manifest and config as JSON."),
    "df": ("dockyard.cli.check", "df", "Disk used per kind (images, caches, runs), shared or not."),
    "diff": ("dockyard.cli.images", "diff", "Files added, removed and changed between images."),
    "tag": ("dockyard.cli.images", "tag", "Give a stored image another name."),
    "rmi": ("dockyard.cli.images", "rmi", "Remove image names (blobs stay until prune)."),
    "prune": ("dockyard.cli.images", "prune", "Delete what no image needs; caches by policy."),
    "save": ("dockyard.cli.archives", "save", "Write images to a docker- or oci-archive."),
    "load": ("dockyard.cli.archives", "load", "Read a docker- or oci-archive into the store."),
    "copy": ("dockyard.cli.archives", "copy", "Copy an image between any two transports."),
    "export": ("dockyard.cli.archives", "export", "Flatten an image into a rootfs directory."),
    "import": ("dockyard.cli.archives", "import_", "Make a directory a one-layer image."),
    "capture": (
        "dockyard.cli.capture",
        "capture",
        "Save the images Kubernetes manifests name to one archive.",
    ),
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
    "check": ("dockyard.cli.check", "check", "Check images against a policy (secrets, users...)."),
    "ci": ("dockyard.cli.ci", "ci", "Run a pipeline file locally; list, show and prune past runs."),
    "server": ("dockyard.cli.service", "server", "Run the CI service: API, webhooks, queue."),
    "agent": ("dockyard.cli.service", "agent", "Run pipelines for a CI server (a build host)."),
    "remote": ("dockyard.cli.remote", "remote", "Use a CI server: repos, runs, logs, secrets."),
}


# command name -> the library modules it imports when it runs, not at its own import (so
# that its --help stays fast): imported with it, while collection is off (see
# :func:`_import_command`), unless only help is asked for.
RUN_IMPORTS: dict[str, tuple[str, ...]] = {"build": ("dockyard.builder.outputs",)}


HELP_HEAD = """\
Usage: dockyard [OPTIONS] COMMAND [ARGS]...

  Daemonless container images: pull, push, copy, save, load, inspect and
  build.

Options:
  --root DIRECTORY            Local store directory [env DOCKYARD_ROOT;
                              default /var/lib/dockyard as root].
  --debug                     Show tracebacks.
  --registry-mirror HOST=URL  Pull HOST's images from the mirror URL first
                              (repeatable; before registries.toml's mirrors)
                              [env DOCKYARD_REGISTRY_MIRROR, space-separated].
  --version                   Show the version and exit.
  -h, --help                  Show this message and exit.
"""
"""The group's help above its commands, as click lays it out in 78 columns."""

HELP_WIDTH = 78  # click's: the terminal's columns, at most 80, less 2


def fast_help(argv: list[str]) -> str | None:
    """The top-level help written without click, or None where click must write it.

    Given if that is all ``argv`` asks for and click would lay it out as :data:`HELP_HEAD` (a
    terminal of 80 columns or more, every command's line fits); else None, and click writes it."""
    if argv[1:] not in (["--help"], ["-h"]) or os.path.basename(argv[0]) != "dockyard":
        return None
    if _columns() < HELP_WIDTH + 2:
        return None
    first = max(len(name) for name in COMMANDS) + 2
    lines = [f"  {name:<{first}}{entry[2]}" for name, entry in sorted(COMMANDS.items())]
    if any(len(line) > HELP_WIDTH for line in lines):
        return None
    return HELP_HEAD + "\nCommands:\n" + "\n".join(lines) + "\n"


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` (which click asks) gives it."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        stdout = sys.__stdout__
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns if stdout else 0
        except (ValueError, OSError):
            columns = 0
    return columns or 80


IMAGES_FLAGS = {"-q": "quiet", "--quiet": "quiet", "--digests": "digests"}


def fast_images(argv: list[str]) -> list[str] | None:
    """The lines of ``dockyard images [-q] [--digests]``, read from the store without click.

    None (click runs the command) for any other command line, or when click would check the group's
    options first: a ``DOCKYARD_ROOT`` that is not a directory, a ``DOCKYARD_REGISTRY_MIRROR`` to
    parse."""
    if argv[1:2] != ["images"] or any(arg not in IMAGES_FLAGS for arg in argv[2:]):
        return None
    root = os.environ.get("DOCKYARD_ROOT")
    if os.environ.get("DOCKYARD_REGISTRY_MIRROR") or (
        root and os.path.exists(root) and not os.path.isdir(root)
    ):
        return None
    from dockyard.cli.tables import images_table
    from dockyard.store.store import Store

    flags = {IMAGES_FLAGS[arg] for arg in argv[2:]}
    return images_table(Store(None).images(), quiet="quiet" in flags, digests="digests" in flags)


def __getattr__(name: str) -> object:
    """``cli``, ``LazyGroup`` and ``Settings`` live in :mod:`.group` (click is imported
    only when one is asked for)."""
    if name in ("cli", "LazyGroup", "Settings"):
        from dockyard.cli import group

        return getattr(group, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    # The interpreter's teardown collects garbage as it clears each module: after click,
    # pydantic and a pipeline run, 40-100 ms here, as long as a container's start. What
    # still lives at exit is frozen instead (the OS frees it); exit handlers, thread
    # joins and flushes all still run. Registered first, it runs after every other one.
    atexit.register(gc.freeze)
    # Imports make objects that live on: collecting while they come finds nothing to free
    # (~10-30 ms of a run here). Collection is back once the command is imported
    # (:func:`_import_command`).
    gc.disable()
    help_text = fast_help(sys.argv)
    if help_text is not None:
        sys.stdout.write(help_text)
        return
    debug = "--debug" in sys.argv or bool(os.environ.get("DOCKYARD_DEBUG"))
    try:
        lines = fast_images(sys.argv)
        if lines is not None:
            sys.stdout.write("".join(line + "\n" for line in lines))
            return
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        _fail(e, debug)
    import click

    from dockyard.cli.group import cli

    # ``import httpx`` also imports httpx's own command line (click, pygments and rich,
    # where installed): 15-90 ms on every registry command, for code we never run. An
    # entry of None makes that import fail at once, and httpx carries on without it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    # httpcore imports trio, where installed, for async code under trio: ~50 ms of every
    # registry command here (selenium brings trio along), for a library we never use.
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]
    try:
        _import_command(sys.argv)
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
        _fail(e, debug)


def _import_command(argv: list[str]) -> None:
    """Import the module of the command ``argv`` names (and its :data:`RUN_IMPORTS`), then
    collect garbage again, with what is imported so far frozen out of the collector's
    sight (it lives on)."""
    for arg in argv[1:]:
        if arg in COMMANDS:  # the first word naming one (if an option's value, no harm)
            importlib.import_module(COMMANDS[arg][0])
            if "--help" not in argv and "-h" not in argv:
                for module in RUN_IMPORTS.get(arg, ()):
                    importlib.import_module(module)
            break
    gc.freeze()
    gc.enable()


def _fail(error: Exception, debug: bool) -> NoReturn:
    """Exit 1 with one line for a dockyard or OS error; a traceback for any other
    error, or for any with ``--debug``."""
    from dockyard.errors import DockyardError

    if debug or not isinstance(error, DockyardError | OSError):
        raise error
    sys.stderr.write(f"dockyard: error: {error}\n")
    sys.exit(1)


if __name__ == "__main__":
    main()
