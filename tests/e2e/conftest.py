"""Fixtures of the CI service's end-to-end tests (:mod:`tests.e2e.service_support`)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.e2e.service_support import GitRepo, Server, clean_up_after_killed_agents, git
from tests.support.listening import ATTEMPTS, free_port, wait_listening


@pytest.fixture
def repo(tmp_path) -> Iterator[GitRepo]:
    need("git")
    base = tmp_path / "git"
    bare = base / "project.git"
    bare.mkdir(parents=True)
    git(bare, "init", "-q", "--bare", "-b", "main")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    daemon, port = _git_daemon(base, tmp_path / "git-daemon.log")
    try:
        yield GitRepo(f"git://127.0.0.1:{port}/project.git", work)
    finally:
        daemon.terminate()
        daemon.wait()


def _git_daemon(base: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """``git daemon`` serving ``base``, once it listens; on another free port if another
    process bound the one chosen first."""
    for _ in range(ATTEMPTS):
        port = free_port()
        with open(log, "ab") as out:
            daemon = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    f"--base-path={base}",
                    "--export-all",
                    "--reuseaddr",
                    "--listen=127.0.0.1",
                    f"--port={port}",
                    str(base),
                ],
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        if wait_listening(daemon, port):
            return daemon, port
    raise RuntimeError(f"git daemon did not start:\n{log.read_text()}")


@pytest.fixture
def server(tmp_path, busybox_ref) -> Iterator[Server]:
    need("runc")
    data = tmp_path / "data"
    instance = Server(data)
    instance.start()
    try:
        yield instance
    finally:
        for agent in instance.agents:
            if agent.poll() is None:
                agent.terminate()
                agent.wait(60)
        if instance.process and instance.process.poll() is None:
            instance.process.terminate()
            instance.process.wait(30)
        clean_up_after_killed_agents(tmp_path)
