"""The top-level command line: ``dockyard --help`` and ``dockyard images`` answered
without click are what click writes (issue 18: start-up)."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from dockyard.cli import main as entry
from dockyard.cli.group import cli
from dockyard.reference import parse
from dockyard.store import Store
from tests.support.sample_images import copy_by_hand, sample_image


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
    done = run_main(["dockyard", "--help"], {"COLUMNS": "100"})
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: dockyard [OPTIONS] COMMAND [ARGS]...")
    assert done.stderr.strip() == "[]"


def test_images_of_a_stored_image_loads_no_dataclasses(store_root):
    """Listing images reads references, descriptors, manifests and configs: all of them
    ``dockyard.frozen`` values, none a dataclass (~17 ms of start-up; issue 18)."""
    copy_by_hand(sample_image(), Store(store_root).destination(parse("busybox")))
    done = run_main(["dockyard", "images", "--digests"], {"DOCKYARD_ROOT": str(store_root)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("docker.io/library/busybox  latest  sha256:")
    assert done.stderr.strip() == "['pathlib']"


@pytest.mark.parametrize("flags", [[], ["-q"], ["--digests"], ["--quiet", "--digests"]])
def test_fast_images_is_clicks_images(monkeypatch, store_root, flags):
    store = Store(store_root)
    for name in ("busybox", "localhost:5000/team/app:v1", "busybox:1.36"):
        copy_by_hand(sample_image(), store.destination(parse(name)))
    monkeypatch.setenv("DOCKYARD_ROOT", str(store_root))
    clicks = CliRunner().invoke(cli, ["images", *flags], catch_exceptions=False).output
    fast = entry.fast_images(["dockyard", "images", *flags])
    assert fast is not None and len(fast) == 3 + (not {"-q", "--quiet"} & set(flags))
    assert "".join(line + "\n" for line in fast) == clicks


def test_fast_images_of_an_empty_or_absent_store(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKYARD_ROOT", str(tmp_path / "none"))
    assert entry.fast_images(["dockyard", "images"]) == ["REPOSITORY  TAG  IMAGE ID  CREATED  SIZE"]
    assert entry.fast_images(["dockyard", "images", "-q"]) == []


def test_click_runs_images_when_it_would_check_options_first(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKYARD_ROOT", str(tmp_path))
    for argv in (
        ["dockyard", "images", "--help"],
        ["dockyard", "images", "-qa"],
        ["dockyard", "--root", str(tmp_path), "images"],
        ["dockyard", "images", "busybox"],
    ):
        assert entry.fast_images(argv) is None
    monkeypatch.setenv("DOCKYARD_REGISTRY_MIRROR", "docker.io=bad")  # click refuses it
    assert entry.fast_images(["dockyard", "images"]) is None
    monkeypatch.delenv("DOCKYARD_REGISTRY_MIRROR")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("DOCKYARD_ROOT", str(tmp_path / "file"))  # click: not a directory
    assert entry.fast_images(["dockyard", "images"]) is None


WATCHED = ("click", "dataclasses", "inspect", "pathlib", "tempfile", "dockyard.store.gc")
"""Modules whose import the fast paths are checked for (``inspect`` comes with dataclasses;
``tempfile`` brings shutil, random, bz2 and lzma: only writers need it)."""


def run_main(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``main()`` in a fresh interpreter with ``argv``; its stderr ends with the list of
    the :data:`WATCHED` modules it imported."""
    code = (
        f"import sys\nsys.argv = {argv!r}\n"
        "from dockyard.cli.main import main\n"
        "try:\n    main()\nfinally:\n"
        f"    print(sorted(m for m in {WATCHED!r} if m in sys.modules), file=sys.stderr)\n"
    )
    return fresh_python(code, env)


def fresh_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter (no site hooks) that imports what we do."""
    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env},
    )


def test_what_lives_at_exit_is_frozen_not_collected_by_the_teardown():
    # A handler registered before main() runs after main's own: by then, all is frozen.
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen:', gc.get_freeze_count() > 0))\n"
        "sys.argv = ['dockyard', '--help']\n"
        "from dockyard.cli.main import main\nmain()\n"
    )
    done = fresh_python(code, {"COLUMNS": "100"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "frozen: True"


def test_collection_is_back_once_the_command_is_imported():
    # off while modules are imported; then on, with what they made frozen out of its way
    code = (
        "import gc, sys\n"
        "sys.argv = ['dockyard', 'tag', '--help']\n"
        "from dockyard.cli.main import main\n"
        "try:\n    main()\n"
        "finally:\n    print('after:', gc.isenabled(), gc.get_freeze_count() > 0)\n"
    )
    done = fresh_python(code, {})
    assert done.stdout.startswith("Usage: dockyard tag"), done.stderr
    assert done.stdout.splitlines()[-1] == "after: True True"


def test_images_loads_no_click_and_errors_in_one_line(tmp_path):
    done = run_main(["dockyard", "images"], {"DOCKYARD_ROOT": str(tmp_path)})
    assert (done.returncode, done.stdout) == (0, "REPOSITORY  TAG  IMAGE ID  CREATED  SIZE\n")
    assert done.stderr.strip() == "['pathlib']"
    (tmp_path / "index.json").write_text("{not json")
    done = run_main(["dockyard", "images"], {"DOCKYARD_ROOT": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.startswith(f"dockyard: error: {tmp_path / 'index.json'}")
    assert len(done.stderr.splitlines()) == 2  # the error, then the list of modules
