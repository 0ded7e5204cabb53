"""The top-level command line: ``dockyard --help`` written without click is the help
click writes (issue 18: start-up)."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest

from dockyard.cli import main as entry
from dockyard.cli.group import cli


def click_help() -> str:
    """What ``dockyard --help`` prints through click (for the terminal width in
    ``COLUMNS``, which click reads as ``shutil.get_terminal_size`` does)."""
    with click.Context(cli, info_name="dockyard", **cli.context_settings) as ctx:
        return cli.get_help(ctx) + "\n"


@pytest.mark.parametrize("columns", [80, 132])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_fast_help_is_clicks_help(monkeypatch, columns, flag):
    """If this fails after an option or command was added: copy the new ``Options:``
    block of ``COLUMNS=80 dockyard --help`` into ``HELP_HEAD``."""
    monkeypatch.setenv("COLUMNS", str(columns))
    assert entry.fast_help(["/usr/bin/dockyard", flag]) == click_help()


def test_click_writes_what_the_fast_path_cannot_lay_out(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")  # click wraps to 58 columns
    assert entry.fast_help(["dockyard", "--help"]) is None
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setitem(entry.COMMANDS, "zz", ("m", "f", "x" * 80))  # wraps
    assert entry.fast_help(["dockyard", "--help"]) is None
    for argv in (["dockyard"], ["dockyard", "--help", "x"], ["dockyard", "images", "--help"]):
        assert entry.fast_help(argv) is None
    assert entry.fast_help(["python -m dockyard.cli.main", "--help"]) is None  # other prog


def test_help_loads_no_click():
    code = (
        "import sys\nsys.argv = ['dockyard', '--help']\n"
        "from dockyard.cli.main import main\nmain()\n"
        "print(sorted(m for m in ('click', 'dataclasses', 'pathlib') if m in sys.modules),"
        " file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100", "PYTHONPATH": os.pathsep.join(sys.path)},
        check=True,
    )
    assert done.stdout.startswith("Usage: dockyard [OPTIONS] COMMAND [ARGS]...")
    assert done.stderr.strip() == "[]"
