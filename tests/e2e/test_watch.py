"""``dockyard watch`` end to end: a real build, real file changes, and a ``--run``
container restarted on each new image. The test waits on watch's output lines, never
on time."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.mountinfo import mount_points_under
from tests.support import working
from tests.support.containers import runc_containers

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="builds need root"),
]

base_tree = working.base_tree
base = working.base

SERVE = 'trap "echo stopping; exit 0" TERM; cat /app/msg; while true; do sleep 0.05; done'


class Watch:
    """A running ``dockyard watch``, its stdout and stderr read line by line."""

    def __init__(self, root: Path, *args: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dockyard.cli.main", "watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DOCKYARD_ROOT": str(root)},
        )
        self.seen: list[str] = []

    def until(self, pattern: str) -> re.Match:
        """Read lines until one matches ``pattern``; return the match."""
        assert self.process.stdout is not None
        while line := self.process.stdout.readline().decode():
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
            if "watch: build failed" in line:  # it would wait for a change for ever
                raise AssertionError(f"a build failed before {pattern!r}:\n{''.join(self.seen)}")
        raise AssertionError(f"watch ended before {pattern!r}:\n{''.join(self.seen)}")

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        assert self.process.stdout is not None
        self.seen += self.process.stdout.read().decode().splitlines(keepends=True)
        return self.process.wait(60)


@pytest.fixture
def app(tmp_path, base) -> Path:
    context = tmp_path / "app"
    (context / "node_modules").mkdir(parents=True)
    (context / "Dockerfile").write_text(
        f"FROM {base}\nCOPY msg /app/msg\nRUN cat /app/msg > /app/copy\n"
        f"CMD {json.dumps(['sh', '-c', SERVE])}\n"
    )
    (context / ".dockerignore").write_text("node_modules\n")
    (context / "msg").write_text("v1\n")
    return context


@pytest.fixture
def watch(store_root) -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for running in started:
        if running.process.poll() is None:
            running.interrupt()
    assert mount_points_under(store_root) == []
    if (store_root / "runc").exists():
        assert runc_containers(store_root) == []


def test_rebuilds_on_a_saved_file_and_restarts_the_container(dockyard, app, watch):
    watch.append(w := Watch(dockyard.root, "-t", "localhost/t/app:dev", "--run", str(app)))
    w.until(r"watch: built in \d+\.\d+s")
    w.until(r"^v1$")  # the container runs on the first image
    (app / "node_modules/x.js").write_text("ignored")
    (app / "msg").write_text("v2\n")
    rebuilt = w.until(r"watch: rebuilt after a change to (.*) in (\d+\.\d+)s")
    assert rebuilt[1] == "msg"  # node_modules is not the build's: it started nothing
    w.until(r"^stopping$")  # the old container got its StopSignal
    w.until(r"^v2$")
    config = dockyard("run", "--rm", "localhost/t/app:dev", "cat", "/app/copy")
    assert config.stdout == b"v2\n"
    # A broken Dockerfile is reported and the watch goes on to the next change.
    dockerfile = (app / "Dockerfile").read_text()
    (app / "Dockerfile").write_text(dockerfile.replace("COPY msg", "COPY missing"))
    w.until(r"watch: build failed")
    (app / "Dockerfile").write_text(dockerfile)
    w.until(r"watch: rebuilt after a change to Dockerfile")
    w.until(r"^v2$")
    assert w.interrupt() == 130
    # Ctrl-C stops the container too, with its StopSignal (its trap exits 0).
    assert re.match(r"watch: container \S+ exited \(0\)", w.seen[-3]), w.seen[-4:]


def test_watch_without_run_only_builds(dockyard, app, watch):
    watch.append(w := Watch(dockyard.root, "-q", "-t", "localhost/t/app:dev", str(app)))
    w.until(r"watch: built in")
    (app / "msg").write_text("v3\n")
    w.until(r"watch: rebuilt after a change to msg")
    assert w.interrupt() == 130
    assert not any("v3" in line for line in w.seen)  # nothing ran
    assert dockyard("run", "--rm", "localhost/t/app:dev", "cat", "/app/copy").stdout == b"v3\n"
