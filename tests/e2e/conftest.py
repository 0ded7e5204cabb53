"""Fixtures of the CI service's end-to-end tests (:mod:`tests.e2e.service_support`)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import free_port, need
from tests.e2e.service_support import GitRepo, Server, clean_up_after_killed_agents, git


@pytest.fixture
def repo(tmp_path) -> Iterator[GitRepo]:
    need("git")
    base = tmp_path / "git"
    bare = base / "project.git"
    bare.mkdir(parents=True)
    git(bare, "init", "-q", "--bare", "-b", "main")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    port = free_port()
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
        stderr=subprocess.DEVNULL,
    )
    try:
        yield GitRepo(f"git://127.0.0.1:{port}/project.git", work)
    finally:
        daemon.terminate()
        daemon.wait()


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
