"""Working containers against hostile images and names.

- ``container diff`` looks paths up in the image's snapshot dirs; an image's symlink
  (``a -> /host/dir``) must not make it report, or even stat, host files.
- A container name is a directory name in the store: ``..`` or a path must not let
  ``container rm`` (or any command) reach outside the containers dir.
- ``run -d``: the job handed to the supervisor carries the container's environment
  (secrets): never on a command line (``/proc/*/cmdline`` is world-readable), and the
  log of its output is 0600 behind the private bundle's guarantees.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.containers.diff import changes
from tests.support import working

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

base_tree = working.base_tree  # a busybox image, for the tests that run containers
base = working.base


def test_diff_never_follows_an_image_symlink_to_the_host(tmp_path):
    victim = tmp_path / "host-dir"
    victim.mkdir()
    (victim / "x").write_text("host file\n")
    (victim / "sub").mkdir()
    lower = tmp_path / "lower"
    lower.mkdir()
    (lower / "a").symlink_to(victim)  # absolute, out of the rootfs
    (lower / "b").symlink_to("../host-dir")  # relative, climbing out
    upper = tmp_path / "upper"
    for name in ("a", "b"):
        (upper / name / "sub").mkdir(parents=True)  # the container made real dirs here
        (upper / name / "x").write_text("container file\n")
    # Followed, the symlinks would make a/x and b/x "C" (they exist on the host) and
    # a/sub a changed dir: they are new, under dirs that replaced symlinks.
    assert changes(upper, [lower]) == [
        ("C", "/a"),
        ("A", "/a/sub"),
        ("A", "/a/x"),
        ("C", "/b"),
        ("A", "/b/sub"),
        ("A", "/b/x"),
    ]
    assert (victim / "x").read_text() == "host file\n"


def test_a_container_name_never_names_a_path(dockyard, tmp_path):
    store = Path(dockyard.root)
    (store / "containers").mkdir()
    (store / "snapshots").mkdir()
    (store / "snapshots" / "container.json").write_text("{}")  # bait for a path lookup
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "container.json").write_text("{}")
    for name in ("..", ".", "../snapshots", str(victim), "../../victim"):
        for command in (["rm", name], ["diff", name], ["commit", name, "localhost/x:1"]):
            result = dockyard("container", *command, check=False)
            assert result.returncode == 1
            assert result.stderr == f"dockyard: error: no such container: {name}\n".encode()
    assert (store / "snapshots" / "container.json").exists()
    assert (victim / "container.json").exists()


def test_run_detached_keeps_its_environment_off_command_lines(dockyard, base):
    from dockyard.containers.logfile import LOG_FILE
    from dockyard.runtime.container import BUNDLES_DIR

    result = dockyard(
        "run", "-d", "-e", "TOKEN=hunter2", base, "sh", "-c", "echo $TOKEN; exec sleep 1000"
    )
    name = result.stdout.decode().strip()
    try:
        log = dockyard.root / "containers" / name / LOG_FILE
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        (bundle,) = (dockyard.root / BUNDLES_DIR).iterdir()
        assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
        env = dockyard("container", "exec", name, "sh", "-c", "env").stdout.decode()
        assert "TOKEN=hunter2" in env  # it is there, so its absence below means something
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert b"hunter2" not in cmdline, pid
    finally:
        dockyard("container", "stop", name)
        dockyard("container", "rm", name)
