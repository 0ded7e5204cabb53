"""``dockyard remote``: the CI server's API from a terminal, against a real server (no
agents): login, repositories, triggers, runs, logs, cancel, restart, secrets."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for_http
from tests.support.listening import start_listening


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, str]]:
    data = tmp_path / "data"
    log = tmp_path / "server.log"

    def serve(port: int) -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dockyard.cli.main",
                    "server",
                    "--addr",
                    f"127.0.0.1:{port}",
                    "--data",
                    str(data),
                    "--no-local-agent",
                ],
                stdout=out,
                stderr=out,
            )

    process, port = start_listening(serve, log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/api/v1", process=process)
        yield url, (data / "admin-token").read_text().strip()
    finally:
        process.terminate()
        process.wait(30)


def remote(tmp_path: Path, *args: str, stdin: str = "", expect: int = 0) -> str:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("DOCKYARD_REMOTE", None)
    env.pop("DOCKYARD_REMOTE_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "dockyard.cli.main", "remote", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == expect, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_remote_commands_drive_the_server(server, tmp_path):
    url, admin = server
    assert "refused" in remote(tmp_path, "login", url, "--token", "dyt_wrong", expect=1)
    remote(tmp_path, "login", url, "--token", admin)
    config = tmp_path / "config" / "dockyard" / "remote.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    remote(tmp_path, "repo", "add", "app", "git://127.0.0.1:1/app.git", "--labels", "arch=amd64")
    assert "arch=amd64" in remote(tmp_path, "repo", "ls")
    assert remote(tmp_path, "trigger", "app", "--env", "A=1").strip() == "1"
    assert remote(tmp_path, "trigger", "app", "--branch", "dev").strip() == "2"
    listed = remote(tmp_path, "runs", "app").splitlines()
    assert [line.split()[:4] for line in listed[1:]] == [
        ["2", "queued", "manual", "dev"],
        ["1", "queued", "manual", "main"],
    ]

    remote(tmp_path, "user", "add", "ada", "--role", "write", stdin="correct horse\n")
    remote(tmp_path, "user", "passwd", "ada", stdin="battery staple\n")
    assert remote(tmp_path, "user", "ls").splitlines()[1].split()[:2] == ["ada", "write"]
    assert "at least 8" in remote(tmp_path, "user", "passwd", "ada", stdin="short", expect=1)
    remote(tmp_path, "user", "rm", "ada")
    assert len(remote(tmp_path, "user", "ls").splitlines()) == 1

    remote(tmp_path, "secret", "set", "app", "TOKEN", stdin="s3cret-value\n")
    assert remote(tmp_path, "secret", "ls", "app").split() == ["TOKEN"]
    remote(tmp_path, "secret", "rm", "app", "TOKEN")
    assert remote(tmp_path, "secret", "ls", "app").split() == []

    remote(tmp_path, "secret", "set", "--global", "SHARED", stdin="v")
    assert remote(tmp_path, "secret", "ls", "--global").split() == ["SHARED"]
    assert "expected REPOSITORY NAME" in remote(tmp_path, "secret", "rm", "SHARED", expect=2)
    remote(tmp_path, "secret", "rm", "--global", "SHARED")
    assert remote(tmp_path, "secret", "ls", "--global").split() == []

    assert (
        remote(tmp_path, "cron", "set", "app", "nightly", "0 3 * * *")
        .strip()
        .endswith("T03:00:00Z")
    )
    assert remote(tmp_path, "cron", "ls", "app").splitlines()[1].split()[:6] == [
        "nightly",
        "0",
        "3",
        "*",
        "*",
        "*",
    ]
    assert "minute" in remote(tmp_path, "cron", "set", "app", "bad", "61 * * * *", expect=1)
    remote(tmp_path, "cron", "rm", "app", "nightly")
    assert len(remote(tmp_path, "cron", "ls", "app").splitlines()) == 1

    queued = remote(tmp_path, "queue").splitlines()
    assert [line.split() for line in queued[1:]] == [
        ["app", "1", "arch=amd64", "no", "agent", "is", "connected"],
        ["app", "2", "arch=amd64", "no", "agent", "is", "connected"],
    ]
    reader = remote(tmp_path, "token", "create", "viewer").strip()
    listed = remote(tmp_path, "token", "ls").splitlines()
    assert [line.split()[1:3] for line in listed[1:]] == [["admin", "admin"], ["viewer", "read"]]
    assert reader not in "".join(listed)
    remote(tmp_path, "token", "rm", listed[2].split()[0])
    assert "viewer" not in remote(tmp_path, "token", "ls")

    remote(tmp_path, "cancel", "app", "1")
    assert "cancelled while queued" in remote(tmp_path, "logs", "app", "1")
    followed = remote(tmp_path, "logs", "-f", "app", "1", expect=1)
    assert "cancelled while queued" in followed and "run 1: cancelled" in followed
    assert remote(tmp_path, "restart", "app", "1").strip() == "3"
    assert "no repository named 'nope'" in remote(tmp_path, "runs", "nope", expect=1)
    assert remote(tmp_path, "agents").split() == [
        "AGENT",
        "LABELS",
        "RUNNING",
        "CAPACITY",
        "LAST",
        "SEEN",
    ]
