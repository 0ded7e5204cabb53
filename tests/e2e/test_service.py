"""``dockyard server`` and ``dockyard agent`` end to end: a server on SQLite, agents with
different labels, a bare git repository served by ``git daemon`` on 127.0.0.1; signed
webhooks, live logs over Server-Sent Events, a killed agent, cancel, a server restart.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dockyard.builder.cache import BuildCache, CacheRecord
from dockyard.disk.usage import take_stock
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.service.server import default_local_agent_name
from dockyard.service.webhooks import sign
from dockyard.store import Store
from tests.conftest import need
from tests.e2e.service_support import (
    WEBHOOK_SECRET,
    GitRepo,
    Server,
    pipeline,
    push_hook,
    push_payload,
    texts,
)
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


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
    assert run["agent"] == "agent-b"  # where it ran, after its lease ended
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


def slow_run_started(server, repo, busybox_ref, store: Path) -> subprocess.Popen:
    """Agent "first" (labels ``pool=x``, ``store``), once the slow step of run 1 it took
    has started."""
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
    first = server.agent("first", "pool=x", store)
    server.call("POST", "/repos/project/runs", 201, json={})
    for _event_id, data in server.follow(1):
        if "step started" in texts(data):
            break
    return first


def test_killed_agent_run_is_finished_by_another(server, repo, busybox_ref, tmp_path):
    first = slow_run_started(server, repo, busybox_ref, tmp_path / "store-first")
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


def test_a_restarted_agent_reaps_its_containers_and_gets_its_run_back(
    server, repo, busybox_ref, tmp_path
):
    """Killed mid-step and started again under its name: the new process takes the name
    over once the killed one's heartbeat is stale (not after the lease), the run is
    requeued then, the killed step is marked failed, and the container the killed
    process left is gone."""
    assert server.process is not None
    server.process.terminate()  # again with a lease no test outlasts: the restart tells
    server.process.wait(30)
    server.lease = 600
    server.start()
    store = tmp_path / "store-first"
    first = slow_run_started(server, repo, busybox_ref, store)
    first.send_signal(signal.SIGKILL)
    first.wait()
    left = subprocess.run(
        ["runc", "--root", str(store / "runc"), "list", "-q"], capture_output=True, text=True
    ).stdout.split()
    assert left  # the killed agent's step container
    server.agent("first", "pool=x", store)
    run = server.wait_for(1, "success", "failure", "error")
    assert run["status"] == "success" and run["attempt"] == 2, run
    log = [t for c in server.call("GET", "/repos/project/runs/1/logs")["chunks"] for t in texts(c)]
    assert "agent first restarted (attempt 1); run requeued" in log
    still = subprocess.run(
        ["runc", "--root", str(store / "runc"), "list", "-q"], capture_output=True, text=True
    ).stdout.split()
    assert not set(left) & set(still)


def test_a_pipelines_labels_send_its_run_to_the_agent_that_has_them(
    server, repo, busybox_ref, tmp_path
):
    repo.commit(
        {
            ".dockyard.yml": pipeline(
                busybox_ref,
                """
        labels: {disk: ssd}
        steps:
          - {name: fast, image: IMAGE, commands: [echo on ssd], labels: {cpu: big}}
        """,
            )
        }
    )
    server.add_repo(repo, {"pool": "x"})
    server.agent("small", "pool=x", tmp_path / "store-small")
    server.call("POST", "/repos/project/runs", 201, json={})
    deadline = time.monotonic() + 60
    while (run := server.call("GET", "/repos/project/runs/1"))["labels"] == {"pool": "x"}:
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    assert run["status"] == "queued" and run["attempt"] == 0
    assert run["labels"] == {"pool": "x", "disk": "ssd", "cpu": "big"}
    assert run["waiting"] == "no agent has cpu=big, disk=ssd"
    assert [r["number"] for r in server.call("GET", "/queue")["items"]] == [1]
    server.agent("big", "pool=x,disk=ssd,cpu=big", tmp_path / "store-big")
    run = server.wait_for(1, "success", "failure", "error")
    assert (run["status"], run["agent"], run["attempt"]) == ("success", "big", 1)
    log = [t for c in server.call("GET", "/repos/project/runs/1/logs")["chunks"] for t in texts(c)]
    assert "agent small lacks cpu=big, disk=ssd: back in the queue" in log
    assert log.count("on ssd") == 1


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
    wait_until(lambda: server.call("GET", "/agents")["items"], "the agent's hello")
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
        name = default_local_agent_name(tmp_path / "data")
        assert run["steps"][0]["agent"] == name
        agents = server.call("GET", "/agents")["items"]
        assert [(a["name"], a["capacity"]) for a in agents] == [(name, 1)]
    finally:
        assert server.process is not None
        server.process.terminate()
        server.process.wait(60)
    # The agent ends with its server (SIGTERM from the kernel when its parent dies).
    wait_until(lambda: _local_agents(tmp_path) == [], "the local agent to end")


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


def test_servers_on_one_postgresql_each_start_a_local_agent_of_their_own(tmp_path, request):
    """Two servers on one database with their local agents: both agents connect under
    names of their own, and a restart of the second server leaves the first's agent (its
    process, its token) alone."""
    database = request.getfixturevalue("postgres_database")
    first = Server(tmp_path / "data-1", database, tmp_path / "secret.key")
    second = Server(tmp_path / "data-2", database, tmp_path / "secret.key")
    names = {default_local_agent_name(s.data) for s in (first, second)}
    first.start(local_agent=True)
    try:
        second.start(local_agent=True)
        _wait_for_agents(first, names)
        (agent_a,) = _local_agents(first.data)
        token_a = _token_id(first, f"agent-{default_local_agent_name(first.data)}")
        assert second.process is not None
        second.process.terminate()
        second.process.wait(60)
        second.start(local_agent=True)
        _wait_for_agents(first, names)
        assert _token_id(first, f"agent-{default_local_agent_name(second.data)}") > token_a
        assert _token_id(first, f"agent-{default_local_agent_name(first.data)}") == token_a
        assert _local_agents(first.data) == [agent_a]
    finally:
        for server in (second, first):
            if server.process is not None:
                server.process.terminate()
                server.process.wait(60)


def _wait_for_agents(server: Server, names: set[str]) -> None:
    """Until ``names`` are the agents the server lists (each connected once)."""
    deadline = time.monotonic() + 60
    while {a["name"] for a in server.call("GET", "/agents")["items"]} != names:
        assert time.monotonic() < deadline, server.call("GET", "/agents")
        time.sleep(0.2)


def _token_id(server: Server, name: str) -> int:
    (token,) = [t["id"] for t in server.call("GET", "/tokens")["items"] if t["name"] == name]
    return token


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


def test_an_agent_past_its_gc_threshold_prunes_after_a_run(server, repo, busybox_ref, tmp_path):
    """A store filled with stale build cache to twice the agent's --gc-keep-storage comes
    back under it after the next run, the image that run used kept."""
    store_root = tmp_path / "store-gc"
    store = Store(store_root)
    store.layout.ensure()
    cache = BuildCache(store_root)
    for i in range(16):  # 16 MB of build cache only records name, last used days ago
        data = os.urandom(1_000_000)
        desc = Descriptor.of_bytes(mt.OCI_LAYER_GZIP, data)
        with store.lease():
            store.blobs.write(desc.digest, io.BytesIO(data), desc.size)
        cache.put(CacheRecord(f"k{i}", desc, "sha256:" + "0" * 64))
        old = time.time() - (i + 1) * 86400
        os.utime(cache.directory / f"k{i}", (old, old))
    threshold = 8_000_000
    assert take_stock(store).total > 2 * threshold
    repo.commit(
        {
            ".dockyard.yml": pipeline(
                busybox_ref, "steps:\n  - {name: t, image: IMAGE, commands: [echo hi]}\n"
            )
        }
    )
    server.add_repo(repo, {})
    server.agent("gc", "", store_root, "--gc-keep-storage", "8MB")
    server.call("POST", "/repos/project/runs", 201, json={"branch": "main"})
    assert server.wait_for(1, "success", "failure")["status"] == "success"
    log = tmp_path / "gc.log"
    deadline = time.monotonic() + 60
    while "gc: " not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)  # the agent collects after it reported the run's end
    assert "gc: the store took" in log.read_text()
    after = take_stock(store)
    assert after.total <= threshold
    assert after.of("images")  # busybox, which the run pulled, stays
    kept = {item.name for item in after.of("build-cache")}
    assert kept == {f"k{i}" for i in range(len(kept))}  # the most recently used
