"""Background containers end to end: ``dockyard run -d``, ``container logs [-f]``,
``container stop [-t]`` and ``container exec``, as root with runc.

The container must outlive the CLI that started it, be seen running by every other
command (and spared by prunes), keep ``dockyard run``'s isolation, and leave nothing
behind once stopped or once its supervisor is killed outright.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys

import pytest

from dockyard.containers.background import RUNNING_FILE
from dockyard.containers.logfile import LOCK_FILE as LOCK
from tests.support import working
from tests.support.containers import runc_containers

clean_host = working.clean_host  # the fixtures of the working containers' tests
base_tree = working.base_tree
base = working.base

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

TRAPS_TERM = 'trap "echo got-term; exit 3" TERM; echo up; while true; do sleep 0.05; done'


def start(dockyard, base: str, script: str, *args: str) -> str:
    result = dockyard("run", "-d", *args, base, "sh", "-c", script)
    (name,) = working.lines(result)
    return name


def status(dockyard, name: str) -> str:
    rows = json.loads(dockyard("container", "ls", "--format", "json").stdout)
    return next(row["status"] for row in rows if row["name"] == name)


def follow(dockyard, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.main", "container", "logs", "-f", name],
        stdout=subprocess.PIPE,
        env={**os.environ, "DOCKYARD_ROOT": str(dockyard.root)},
    )


def test_runs_in_the_background_then_stops_with_its_stop_signal(dockyard, base):
    name = start(dockyard, base, TRAPS_TERM)
    # The CLI has returned: the container runs on, seen by every other command.
    assert status(dockyard, name) == "running"
    logs = follow(dockyard, name)
    assert logs.stdout.readline() == b"up\n"
    assert dockyard("container", "exec", name, "sh", "-c", "echo $((6*7))").stdout == b"42\n"
    for args in (["rm", name], ["commit", name, "localhost/t/live:1"], ["run", name, "true"]):
        refused = dockyard("container", *args, check=False)
        assert refused.returncode == 1
        assert len(refused.stderr.splitlines()) == 1
        assert b"running in the background" in refused.stderr, refused.stderr
    assert working.lines(dockyard("container", "stop", name)) == [name]
    # logs -f ends with the container, having printed what its trap wrote.
    assert logs.stdout.read() == b"got-term\n"
    assert logs.wait(60) == 0
    assert status(dockyard, name) == "exited (3)"
    assert dockyard("container", "logs", name).stdout == b"up\ngot-term\n"
    assert not (dockyard.root / "containers" / name / RUNNING_FILE).exists()
    # Stopped, it is a working container like any other: commit what it did.
    dockyard("container", "exec", name, "true", check=False)
    dockyard("container", "run", name, "--", "sh", "-c", "echo x > /x")
    assert "A /x" in working.lines(dockyard("container", "diff", name))


def test_stop_kills_an_init_that_cannot_catch_the_signal_at_once(dockyard, base):
    # sleep as pid 1 has no TERM handler: the kernel drops TERM, so waiting the -t
    # 600 seconds would be futile; stop kills at once (the test's timeout says so).
    name = start(dockyard, base, "exec sleep 1000")
    assert working.lines(dockyard("container", "stop", "-t", "600", name)) == [name]
    assert status(dockyard, name) == f"exited ({128 + signal.SIGKILL})"
    again = dockyard("container", "stop", name)
    assert b"not running" in again.stderr


def test_a_command_that_cannot_start_fails_at_once(dockyard, base):
    result = dockyard("run", "-d", base, "no-such-command", check=False)
    assert result.returncode == 125
    error = result.stderr.decode()
    assert error.count("\n") == 1 and "no-such-command" in error, error
    assert result.stdout == b""


def test_isolated_as_dockyard_run(dockyard, base):
    name = start(dockyard, base, "exec sleep 1000")
    # exec joins its namespaces and seccomp filter; the default network is NAT'd.
    seccomp = dockyard("container", "exec", name, "cat", "/proc/self/status").stdout
    assert b"Seccomp:\t2" in seccomp
    route = dockyard("container", "exec", name, "cat", "/proc/net/route").stdout.decode()
    assert "tap0" in route
    # -e and -u (a name resolved in its rootfs as it is now) reach the exec'd process;
    # its exit status is the command's.
    dockyard("container", "exec", name, "sh", "-c", "echo app:x:1234:1234::/:/bin/sh >>/etc/passwd")
    run = dockyard(
        "container", "exec", "-e", "X=1", "-u", "app", name, "sh", "-c", "echo $X $(id -u)",
    )  # fmt: skip
    assert run.stdout == b"1 1234\n"
    assert dockyard("container", "exec", name, "sh", "-c", "exit 7", check=False).returncode == 7
    dockyard("container", "stop", name)


def test_prune_spares_it_and_a_killed_supervisor_leaves_nothing(dockyard, base, store_root):
    name = start(dockyard, base, "exec sleep 1000")
    dockyard("rmi", base)
    dockyard("prune")
    dockyard("container", "prune")
    assert status(dockyard, name) == "running"
    assert dockyard("container", "exec", name, "true").returncode == 0
    running = json.loads((store_root / "containers" / name / RUNNING_FILE).read_bytes())
    pidfd = os.pidfd_open(running["pid"])  # before the kill: after it, it may be reaped
    try:  # the supervisor, as the OOM killer would; dead before the next command
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        assert select.select([pidfd], [], [], 60)[0], "the supervisor outlived SIGKILL"
    finally:
        os.close(pidfd)
    # The next command that takes the container reaps its runc container and repairs it.
    dockyard("container", "run", name, "--", "true")
    assert runc_containers(store_root) == []
    assert not (store_root / "containers" / name / RUNNING_FILE).exists()
    assert status(dockyard, name) == "exited (0)"


# Three batches of 300 lines of 18 bytes (5.4 KB: at most two rotations of 4 KB each,
# so the file logs -f reads is never rotated away), each let go by the test.
BATCHES = (
    'for b in 1 2 3; do i=100; while [ $i -lt 400 ]; do echo "batch $b line $i"; '
    "i=$((i+1)); done; until [ -e /go$b ]; do sleep 0.05; done; done"
)


def batch(b: int) -> bytes:
    return b"".join(b"batch %d line %d\n" % (b, i) for i in range(100, 400))


def test_the_log_rotates_and_logs_reads_across_it(dockyard, base, store_root):
    name = start(dockyard, base, BATCHES, "--log-opt", "max-size=4k", "--log-opt", "max-file=3")
    logs = follow(dockyard, name)
    assert logs.stdout is not None
    seen = b""
    try:
        for b in (1, 2, 3):
            while not seen.endswith(b"batch %d line 399\n" % b):
                seen += logs.stdout.readline()
            dockyard("container", "exec", name, "sh", "-c", f": > /go{b}")
    finally:
        dockyard("container", "stop", name)  # at once if it ended: a failure stops it
    # -f read on through every rotation and ended with the container.
    assert seen + logs.stdout.read() == batch(1) + batch(2) + batch(3)
    assert logs.wait(60) == 0
    assert status(dockyard, name) == "exited (0)"
    directory = store_root / "containers" / name
    sizes = {p.name: p.stat().st_size for p in directory.glob("container.log*")}
    assert set(sizes) == {"container.log", "container.log.1", "container.log.2", LOCK}
    assert max(sizes.values()) <= 4096
    # logs reads the files kept, oldest first: the newest 8-12 KB of the output.
    kept = dockyard("container", "logs", name).stdout
    everything = batch(1) + batch(2) + batch(3)
    assert 8192 < len(kept) <= 3 * 4096 and everything.endswith(kept)


def test_bad_log_opts_are_one_line(dockyard, base):
    for opts in (["max-size=0"], ["max-file=none"], ["mode=non-blocking"], ["max-size=1x"]):
        result = dockyard("run", "-d", "--log-opt", *opts, base, "true", check=False)
        assert result.returncode == 2
        assert b"--log-opt" in result.stderr and result.stdout == b""
    result = dockyard("run", "--log-opt", "max-size=1k", base, "true", check=False)
    assert b"--log-opt is for the log of -d" in result.stderr
    assert working.lines(dockyard("container", "ls", "-q")) == []


def test_run_d_rm_deletes_it_when_it_ends(dockyard, base):
    name = start(dockyard, base, "exec sleep 1000", "--rm", "--name", "gone")
    assert name == "gone"
    dockyard("container", "stop", name)
    assert working.lines(dockyard("container", "ls", "-q")) == []


def test_bad_input_is_one_line(dockyard, base):
    for args in (
        ("container", "stop", "nope"),
        ("container", "exec", "nope", "true"),
        ("container", "logs", "nope"),
    ):
        result = dockyard(*args, check=False)
        assert result.returncode != 0
        assert result.stderr.decode().strip().count("\n") == 0, result.stderr
    usage = dockyard("run", "-d", "-i", base, "true", check=False)
    assert b"-d runs without a terminal" in usage.stderr
    name = working.lines(dockyard("container", "create", base))[0]
    result = dockyard("container", "exec", name, "true", check=False)
    assert b"not running in the background" in result.stderr
