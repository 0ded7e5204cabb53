"""``dockyard server`` and ``dockyard agent`` end to end: a server on SQLite, agents with
different labels, a bare git repository served by ``git daemon`` on 127.0.0.1; signed
webhooks, live logs over Server-Sent Events, a killed agent, cancel, a server restart.
"""

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
import pytest

from dockyard.mountinfo import mount_points_under
from dockyard.service.webhooks import sign
from tests.conftest import free_port, need, wait_for_http

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]
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
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    agents: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, local_agent: bool = False) -> None:
        self.process = spawn(
            [
                sys.executable,
                "-m",
                "dockyard.cli.main",
                "--root",
                str(self.data.parent / "store-local"),
                "server",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--data",
                str(self.data),
                *([] if local_agent else ["--no-local-agent"]),
                *(["--database", self.database] if self.database else []),
                *(["--secret-key-file", str(self.key_file)] if self.key_file else []),
                "--lease",
                str(LEASE),
            ],
            self.data.parent / "server.log",
        )
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

    def agent(self, name: str, labels: str, store: Path) -> subprocess.Popen:
        """An agent process with its own store and workdir."""
        token = self.call("POST", "/tokens", 201, json={"name": name, "role": "agent"})["token"]
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
        _clean_up_after_killed_agents(tmp_path)


def _clean_up_after_killed_agents(tmp_path: Path) -> None:
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


def test_signed_push_runs_on_the_fitting_agent_with_live_logs(server, repo, busybox_ref, tmp_path):
    report = (
        '<testsuite><testcase name="ok"/><testcase name="bad">'
        '<failure message="no"/></testcase></testsuite>'
    )
    sha = repo.commit(
        {
            ".dockyard.yml": pipeline(
                busybox_ref,
                f"""
        steps:
          - name: test
            image: IMAGE
            secrets: [TOKEN]
            commands:
              - echo "token=$TOKEN"
              - echo first line
              - sleep 3
              - echo '{report}' > junit.xml
              - mkdir -p dist && echo built > dist/app.txt && ln -s /etc/passwd dist/link
              - echo last line
            reports: {{junit: junit.xml}}
            artifacts: ["dist/**"]
        """,
            )
        }
    )
    server.add_repo(repo, {"pool": "b"})
    server.call("PUT", "/repos/project/secrets/TOKEN", 204, json={"value": "s3cr3t-value"})
    assert server.call("GET", "/repos/project/secrets")["items"] == [{"name": "TOKEN"}]
    server.agent("agent-a", "pool=a", tmp_path / "store-a")
    server.agent("agent-b", "pool=b", tmp_path / "store-b")

    body = push_payload(sha)
    assert push_hook(server, body, None).status_code == 401
    assert push_hook(server, body, sign("wrong secret", body)).status_code == 401
    assert push_hook(server, body + b" ", sign(WEBHOOK_SECRET, body)).status_code == 401
    assert server.call("GET", "/repos/project/runs")["total"] == 0  # nothing queued
    response = push_hook(server, body, sign(WEBHOOK_SECRET, body))
    assert response.status_code == 201, response.text
    assert response.json()["queued"]["number"] == 1

    seen: list[tuple[int, str]] = []
    status_at_first_line = None
    for event_id, data in server.follow(1):
        if event_id == 0:
            assert data == {"status": "success"}
            break
        for text in texts(data):
            seen.append((event_id, text))
            if text == "first line":  # live: the run still runs while we read it
                status_at_first_line = server.call("GET", "/repos/project/runs/1")["status"]
    assert status_at_first_line == "running"
    lines = [text for _, text in seen]
    assert lines.index("first line") < lines.index("last line")
    assert "token=********" in lines
    run = server.call("GET", "/repos/project/runs/1")
    assert run["status"] == "success" and run["commit"] == sha and run["event"] == "push"
    assert run["author"] == "Ada"
    (step,) = run["steps"]
    assert step["agent"] == "agent-b" and step["status"] == "success"
    assert step["tests"]["passed"] == 1 and step["tests"]["failed"] == 1
    artifacts = server.call("GET", "/repos/project/runs/1/artifacts")["items"]
    assert [(a["step"], a["path"], a["size"]) for a in artifacts] == [("test", "dist/app.txt", 6)]
    download = server.api.get("/repos/project/runs/1/artifacts/test/dist/app.txt")
    assert download.content == b"built\n"
    everything = json.dumps(server.call("GET", "/repos/project/runs/1/logs"))
    assert "s3cr3t-value" not in everything
    assert b"s3cr3t-value" not in (server.data / "dockyard.db").read_bytes()

    # Resuming after an event gives exactly the events after it.
    ids = sorted({event_id for event_id, _ in seen})
    resumed = [event_id for event_id, _ in server.follow(1, last_id=ids[0]) if event_id]
    assert resumed == ids[1:]


def test_killed_agent_run_is_finished_by_another(server, repo, busybox_ref, tmp_path):
    repo.commit(
        {
            ".dockyard.yml": pipeline(
                busybox_ref,
                """
        steps:
          - name: slow
            image: IMAGE
            commands: [echo step started, sleep 4, echo step done]
        """,
            )
        }
    )
    server.add_repo(repo, {"pool": "x"})
    first = server.agent("first", "pool=x", tmp_path / "store-first")
    server.call("POST", "/repos/project/runs", 201, json={})
    for _event_id, data in server.follow(1):
        if "step started" in texts(data):
            break
    first.send_signal(signal.SIGKILL)
    first.wait()
    server.agent("second", "pool=x", tmp_path / "store-second")
    run = server.wait_for(1, "success", "failure", "error")
    assert run["status"] == "success", run
    assert run["attempt"] == 2
    assert run["steps"][0]["agent"] == "second"
    log = [t for c in server.call("GET", "/repos/project/runs/1/logs")["chunks"] for t in texts(c)]
    assert any("run requeued" in t for t in log)
    assert log.count("step done") == 1  # the first agent never got that far


def test_cancel_kills_the_running_step(server, repo, busybox_ref, tmp_path):
    repo.commit(
        {
            ".dockyard.yml": pipeline(
                busybox_ref,
                """
        steps:
          - name: forever
            image: IMAGE
            commands: [echo waiting, sleep 300]
          - name: after
            depends_on: [forever]
            image: IMAGE
            commands: [echo never]
        """,
            )
        }
    )
    server.add_repo(repo, {})
    server.agent("worker", "", tmp_path / "store-w")
    server.call("POST", "/repos/project/runs", 201, json={"branch": "main"})
    for _event_id, data in server.follow(1):
        if "waiting" in texts(data):
            break
    started = time.monotonic()
    server.call("POST", "/repos/project/runs/1/cancel", 202)
    run = server.wait_for(1, "cancelled", "success", "failure", timeout=60)
    took = time.monotonic() - started
    assert run["status"] == "cancelled"
    assert took < 10, f"cancel took {took:.1f}s"
    assert {s["name"]: s["status"] for s in run["steps"]}["forever"] == "cancelled"
    server.call("POST", "/repos/project/runs/1/cancel", 409)  # already ended


def test_server_restart_keeps_queued_runs_and_agents_reconnect(server, repo, busybox_ref, tmp_path):
    repo.commit(
        {
            ".dockyard.yml": pipeline(
                busybox_ref,
                """
        steps:
          - name: hello
            image: IMAGE
            commands: [echo hello $CI_RUN_NUMBER]
        """,
            )
        }
    )
    server.add_repo(repo, {"pool": "late"})
    server.call(
        "POST",
        "/repos",
        201,
        json={"name": "other", "clone_url": repo.url, "labels": {"pool": "early"}},
    )
    server.agent("early", "pool=early", tmp_path / "store-early")  # fits only "other"
    deadline = time.monotonic() + 30
    while not server.call("GET", "/agents")["items"] and time.monotonic() < deadline:
        time.sleep(0.1)  # until the agent has said hello
    for _ in range(3):
        server.call("POST", "/repos/project/runs", 201, json={})
    assert server.call("GET", "/repos/project/runs/1")["waiting"] == "no agent has pool=late"
    server.kill()
    server.start()  # same port and data: the agent finds it again by itself
    runs = server.call("GET", "/repos/project/runs")
    assert [(r["number"], r["status"]) for r in runs["items"]] == [
        (3, "queued"),
        (2, "queued"),
        (1, "queued"),
    ]
    server.call("POST", "/repos/other/runs", 201, json={})
    other = server.wait_for(1, "success", "failure", repository="other")
    assert (other["status"], other["steps"][0]["agent"]) == ("success", "early")
    server.agent("late", "pool=late", tmp_path / "store-late")
    for number in (1, 2, 3):
        run = server.wait_for(number, "success", "failure")
        assert (run["status"], run["steps"][0]["agent"]) == ("success", "late")
    assert server.call("POST", "/repos/project/runs", 201, json={})["number"] == 4


def test_the_servers_own_agent_runs_pipelines_by_default(tmp_path, repo, busybox_ref):
    need("runc")
    repo.commit(
        {
            ".dockyard.yml": pipeline(
                busybox_ref,
                """
                steps:
                  - name: hello
                    image: IMAGE
                    commands: [echo hello from the local agent]
                """,
            )
        }
    )
    server = Server(tmp_path / "data")
    server.start(local_agent=True)
    try:
        server.add_repo(repo, {})
        server.call("POST", "/repos/project/runs", 201, json={})
        run = server.wait_for(1, "success", "failure")
        assert run["status"] == "success"
        assert run["steps"][0]["agent"] == "local"
        agents = server.call("GET", "/agents")["items"]
        assert [(a["name"], a["capacity"]) for a in agents] == [("local", 1)]
    finally:
        assert server.process is not None
        server.process.terminate()
        server.process.wait(60)
    # The agent ends with its server (SIGTERM from the kernel when its parent dies).
    deadline = time.monotonic() + 30
    while _local_agents(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _local_agents(tmp_path) == []


def _local_agents(tmp_path: Path) -> list[str]:
    return [p for p in os.listdir("/proc") if p.isdigit() and _is_local_agent(p, tmp_path)]


def _is_local_agent(pid: str, tmp_path: Path) -> bool:
    try:
        cmdline = Path("/proc", pid, "cmdline").read_bytes()
    except OSError:
        return False
    return b"\0agent\0" in cmdline and str(tmp_path).encode() in cmdline


def test_a_pipeline_file_error_fails_the_run_with_file_and_line(server, repo, tmp_path):
    repo.commit({".dockyard.yml": "steps:\n  - name: x\n    imagee: busybox\n"})
    server.add_repo(repo, {})
    server.agent("worker", "", tmp_path / "store-w")
    server.call("POST", "/repos/project/runs", 201, json={})
    run = server.wait_for(1, "failure", "success")
    assert run["status"] == "failure"
    assert run["error"].startswith(".dockyard.yml:3:"), run["error"]
    assert run["steps"] == []


def two_servers_on_postgresql(
    tmp_path: Path, repo: GitRepo, busybox_ref: str, database: str, runs: int, agents: int
) -> None:
    """``runs`` runs queued through two servers on one PostgreSQL database, taken by
    ``agents`` agents (half on each server): each runs exactly once, with the secret the
    first server sealed and the second opened."""
    repo.commit(
        {
            ".dockyard.yml": pipeline(
                busybox_ref,
                """
                steps:
                  - name: hello
                    image: IMAGE
                    secrets: [TOKEN]
                    commands: [echo "run $CI_RUN_NUMBER", test "$TOKEN" = shared-key]
                """,
            )
        }
    )
    first = Server(tmp_path / "data-1", database, tmp_path / "secret.key")
    second = Server(tmp_path / "data-2", database, tmp_path / "secret.key")
    first.start()
    second.start()  # the first server's admin token is the only admin token
    second.login(first.api.headers["Authorization"].split()[1])
    try:
        first.add_repo(repo, {})
        first.call("PUT", "/repos/project/secrets/TOKEN", 204, json={"value": "shared-key"})
        for number in range(1, runs + 1):  # the servers take turns receiving triggers
            server = first if number % 2 else second
            assert server.call("POST", "/repos/project/runs", 201, json={})["number"] == number
        for i in range(agents):
            server = first if i % 2 else second
            server.agent(f"agent-{i}", "", tmp_path / "store")  # one store, as on one host
        used = set()
        for number in range(1, runs + 1):
            run = second.wait_for(number, "success", "failure", "error", timeout=600)
            assert (run["status"], run["attempt"]) == ("success", 1), run
            used.add(run["steps"][0]["agent"])
            log = first.call("GET", f"/repos/project/runs/{number}/logs")["chunks"]
            assert [t for c in log for t in texts(c)].count(f"run {number}") == 1
        assert used == {f"agent-{i}" for i in range(agents)}  # spread over the agents
    finally:
        for server in (first, second):
            for agent in server.agents:
                agent.terminate()
                agent.wait(60)
            assert server.process is not None
            server.process.terminate()
            server.process.wait(30)


def test_two_servers_on_postgresql_run_every_run_once(tmp_path, repo, busybox_ref, request):
    need("runc")
    database = request.getfixturevalue("postgres_database")
    two_servers_on_postgresql(tmp_path, repo, busybox_ref, database, runs=10, agents=2)


@pytest.mark.slow
def test_200_queued_runs_over_4_agents_each_run_once(tmp_path, repo, busybox_ref, request):
    need("runc")
    database = request.getfixturevalue("postgres_database")
    two_servers_on_postgresql(tmp_path, repo, busybox_ref, database, runs=200, agents=4)


def test_a_commit_that_cannot_be_fetched_fails_the_run_with_gits_reason(server, repo, tmp_path):
    server.call(
        "POST",
        "/repos",
        201,
        json={"name": "project", "clone_url": repo.url.replace("project.git", "none.git")},
    )
    server.agent("worker", "", tmp_path / "store-w")
    server.call("POST", "/repos/project/runs", 201, json={"commit": "1" * 40})
    run = server.wait_for(1, "failure", "success")
    assert run["status"] == "failure"
    assert run["error"].startswith("git fetch:"), run["error"]
