"""``dockyard run`` end to end: an image pulled from a registry on first use, docker's
options, exit codes passed through, container state kept or removed, a clean host."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator

import pytest

from dockyard.mountinfo import mount_points_under
from dockyard.runtime.container import BUNDLES_DIR
from tests.conftest import need
from tests.support.containers import runc_containers

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


@pytest.fixture(autouse=True)
def clean_host(store_root) -> Iterator[None]:
    need("runc")
    yield
    assert mount_points_under(store_root) == []
    if (store_root / "runc").exists():
        assert runc_containers(store_root) == []
    assert list((store_root / BUNDLES_DIR).glob("*")) == []


def test_pulls_then_passes_the_exit_code_through(dockyard, busybox_ref, store_root):
    result = dockyard("run", "--rm", busybox_ref, "sh", "-c", "echo hi; exit 3", check=False)
    assert result.returncode == 3
    assert result.stdout == b"hi\n"
    assert b"pulling" in result.stderr
    assert not (store_root / "containers").exists()
    result = dockyard("run", "--rm", busybox_ref, "sh", "-c", "exit 0")  # now stored: no pull
    assert b"pulling" not in result.stderr


def test_env_volumes_workdir_and_user(dockyard, busybox_ref, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in").write_text("from the host\n")
    monkeypatch.setenv("PASSED_ON", "yes")
    script = (
        'echo "$A|$PASSED_ON|$UNSET_HERE"; pwd; cat /ro/in; echo out > /rw/out;'
        " echo no > /ro/x 2>/dev/null || echo ro-refused"
    )
    result = dockyard(
        "run", "--rm",
        "-e", "A=1", "-e", "PASSED_ON", "-e", "UNSET_HERE",
        "-v", f"{data}:/ro:ro", "-v", f"{data}:/rw",
        "-w", "/made/here",
        busybox_ref, "sh", "-c", script,
    )  # fmt: skip
    assert result.stdout.decode().splitlines() == [
        "1|yes|",
        "/made/here",
        "from the host",
        "ro-refused",
    ]
    result = dockyard("run", "--rm", "-u", "nobody", busybox_ref, "sh", "-c", "id -u; id -g")
    assert result.stdout.split() == [b"65534", b"65534"]
    assert (data / "out").read_text() == "out\n"
    assert not (data / "x").exists()


def test_image_defaults_and_entrypoint(dockyard, busybox_ref):
    # The image's CMD is /bin/sh: with stdin connected it reads the script from there.
    result = dockyard(
        "run", "--rm", "-i", busybox_ref, input=b"echo from-stdin; exit 4", check=False
    )
    assert (result.returncode, result.stdout) == (4, b"from-stdin\n")
    result = dockyard("run", "--rm", "--entrypoint", "/bin/echo", busybox_ref, "a", "b")
    assert result.stdout == b"a b\n"
    result = dockyard(
        "run", "--rm", "--network", "host", busybox_ref, "sh", "-c", "ls /sys/class/net"
    )
    assert sorted(result.stdout.split()) == sorted(n.encode() for n in os.listdir("/sys/class/net"))


def test_without_rm_the_changes_and_a_record_stay(dockyard, busybox_ref, store_root):
    """A working container (see test_containers.py), named on stderr."""
    result = dockyard("run", busybox_ref, "sh", "-c", "echo kept > /kept")
    name = result.stderr.decode().splitlines()[-1]  # after the pull's progress
    (state,) = (store_root / "containers").iterdir()
    assert state.name == name == "busybox-working-container"
    record = json.loads((state / "container.json").read_text())
    assert record["exit_code"] == 0
    assert record["command"] == ["sh", "-c", "echo kept > /kept"]
    assert record["chain"] and record["head"]["digest"].startswith("sha256:")
    assert (state / "upper/kept").read_text() == "kept\n"
    assert sorted(p.name for p in state.iterdir()) == ["container.json", "lock", "upper"]


def test_a_container_that_cannot_start_exits_125(dockyard, busybox_ref, store_root):
    result = dockyard("run", "--rm", busybox_ref, "/no/such/command", check=False)
    assert result.returncode == 125
    assert b"no such file" in result.stderr
    assert not (store_root / "containers").exists()


def test_bad_options(dockyard, busybox_ref, tmp_path):
    result = dockyard("run", "-v", "nocolon", busybox_ref, check=False)
    assert result.returncode == 2 and b"HOST:CTR" in result.stderr
    result = dockyard("run", "-v", f"{tmp_path}/missing:/x", busybox_ref, check=False)
    assert result.returncode == 2 and b"does not exist" in result.stderr
    result = dockyard("run", "-t", busybox_ref, "true", check=False)
    assert result.returncode == 2 and b"not a TTY" in result.stderr


def test_terminal(busybox_ref, store_root):
    """``-it`` on a pseudo-terminal: the container gets a terminal of its own."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "DOCKYARD_ROOT": str(store_root)}
    script = "test -t 0 && test -t 1 && echo has-a-tty; exit 5"
    command = ["run", "--rm", "-it", busybox_ref, "sh", "-c", script]
    child = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.main", *command],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        start_new_session=True,
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: every writer has gone
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert child.wait(timeout=60) == 5
    assert b"has-a-tty" in output


def test_prune_ends_a_killed_runs_container_and_keeps_its_changes(dockyard, busybox_ref):
    """``kill -9`` of ``dockyard run`` leaves runc's container running; prune ends it
    and unmounts its rootfs, whose upper dir (kept for a commit) holds what it wrote."""
    import signal

    from tests.support.containers import processes_running

    marker = "sleep 1727"
    script = f"echo kept > /written; echo started; {marker}"
    run = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.main", "run", busybox_ref, "sh", "-c", script],
        env={**os.environ, "DOCKYARD_ROOT": str(dockyard.root)},
        stdout=subprocess.PIPE,
    )
    assert run.stdout is not None
    assert run.stdout.readline() == b"started\n"
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert processes_running(marker)

    dockyard("prune")
    assert processes_running(marker) == []
    assert mount_points_under(dockyard.root) == []
    (state,) = (dockyard.root / "containers").iterdir()
    assert (state / "upper/written").read_text() == "kept\n"
