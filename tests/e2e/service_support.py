"""What the CI service's end-to-end tests share: a bare git repository served by
``git daemon``, a ``dockyard server`` process with agents, and helpers to call it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from dockyard.mountinfo import mount_points_under
from tests.conftest import wait_for_http
from tests.support.listening import start_listening

WEBHOOK_SECRET = "a-webhook-secret-of-some-length"
LEASE = 3  # seconds without a heartbeat before an agent is taken for dead


@dataclass
class GitRepo:
    """A bare repository served by git daemon, and a clone to commit to it from."""

    url: str
    work: Path

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", message)
        git(self.work, "push", "-q", "origin", "HEAD:refs/heads/main")
        return git(self.work, "rev-parse", "HEAD").strip()


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``command`` in the background, its stderr appended to ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=fd)
    finally:
        os.close(fd)


@dataclass
class Server:
    data: Path
    database: str | None = None  # default: SQLite in ``data``
    key_file: Path | None = None  # default: in ``data``
    port: int = 0  # chosen by the first start
    lease: float = LEASE
    process: subprocess.Popen | None = None
    agents: list[subprocess.Popen] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # agent name -> its token

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, local_agent: bool = False) -> None:
        """Start the server (again on its port, once it has one) and wait until it answers."""

        def serve(port: int) -> subprocess.Popen:
            return spawn(
                [
                    sys.executable,
                    "-m",
                    "dockyard.cli.main",
                    "--root",
                    str(self.data.parent / "store-local"),
                    "server",
                    "--addr",
                    f"127.0.0.1:{port}",
                    "--data",
                    str(self.data),
                    *([] if local_agent else ["--no-local-agent"]),
                    *(["--database", self.database] if self.database else []),
                    *(["--secret-key-file", str(self.key_file)] if self.key_file else []),
                    "--lease",
                    str(self.lease),
                ],
                self.data.parent / "server.log",
            )

        self.process, self.port = start_listening(serve, self.data.parent / "server.log", self.port)
        wait_for_http(self.url + "/api/v1")
        if (self.data / "admin-token").exists():  # only the first server on a database
            self.login((self.data / "admin-token").read_text().strip())

    def login(self, token: str) -> None:
        self.api = httpx.Client(
            base_url=self.url + "/api/v1",
            timeout=30,
            headers={"Authorization": "Bearer " + token},
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def call(self, method: str, path: str, expect: int = 200, **kwargs) -> dict:
        response = self.api.request(method, path, **kwargs)
        assert response.status_code == expect, response.text
        return response.json() if response.content else {}

    def agent(self, name: str, labels: str, store: Path, *options: str) -> subprocess.Popen:
        """An agent process with its own store and workdir (and more ``options``); an
        agent started again under a name has the token it had."""
        if name not in self.tokens:
            made = self.call("POST", "/tokens", 201, json={"name": name, "role": "agent"})
            self.tokens[name] = made["token"]
        token = self.tokens[name]
        store.mkdir(parents=True, exist_ok=True)
        process = spawn(
            [
                sys.executable,
                "-m",
                "dockyard.cli.main",
                "--root",
                str(store),
                "agent",
                "--server",
                self.url,
                "--name",
                name,
                "--labels",
                labels,
                "--workdir",
                str(store.parent / f"{name}-work"),
                *options,
            ],
            store.parent / f"{name}.log",
            env={**os.environ, "DOCKYARD_AGENT_TOKEN": token},
        )
        self.agents.append(process)
        return process

    def add_repo(self, repo: GitRepo, labels: dict[str, str]) -> None:
        self.call(
            "POST",
            "/repos",
            201,
            json={
                "name": "project",
                "clone_url": repo.url,
                "webhook_secret": WEBHOOK_SECRET,
                "labels": labels,
            },
        )

    def wait_for(
        self, number: int, *statuses: str, timeout: float = 120, repository: str = "project"
    ) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.call("GET", f"/repos/{repository}/runs/{number}")
            if run["status"] in statuses or time.monotonic() > deadline:
                assert run["status"] in statuses, run
                return run
            time.sleep(0.2)

    def follow(self, number: int, last_id: int | None = None) -> Iterator[tuple[int, dict]]:
        """The log's events as they come: (id, data); ``(0, {"status"})`` at the end."""
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        with self.api.stream(
            "GET",
            f"/repos/project/runs/{number}/logs",
            headers=headers,
            timeout=httpx.Timeout(30, read=120),
        ) as response:
            assert response.status_code == 200
            event: dict[str, str] = {}
            for line in response.iter_lines():
                if line:
                    key, _, value = line.partition(": ")
                    event[key] = value
                    continue
                if event.get("event") == "log":
                    yield int(event["id"]), json.loads(event["data"])
                elif event.get("event") == "end":
                    yield 0, json.loads(event["data"])
                    return
                event = {}


def texts(data: dict) -> list[str]:
    return [text for _source, text, _note in data.get("lines", [])]


def clean_up_after_killed_agents(tmp_path: Path) -> None:
    """What an agent killed with SIGKILL leaves: its containers, mounts and netns."""
    for runc_root in tmp_path.glob("*/runc"):
        listed = subprocess.run(
            ["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True
        ).stdout.split()
        for container in listed:
            subprocess.run(
                ["runc", "--root", str(runc_root), "delete", "--force", container],
                capture_output=True,
            )
    for point in sorted(mount_points_under(tmp_path), key=lambda p: len(str(p)), reverse=True):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def pipeline(busybox_ref: str, body: str) -> str:
    return textwrap.dedent(body).replace("IMAGE", busybox_ref)


def push_hook(server: Server, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return httpx.post(server.url + "/api/v1/hooks/project", content=body, headers=headers)


def push_payload(sha: str) -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": sha,
            "head_commit": {"id": sha, "message": "add the pipeline", "author": {"name": "Ada"}},
            "pusher": {"name": "ada"},
        }
    ).encode()
