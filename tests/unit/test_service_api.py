"""The CI service's REST API in-process: paging, cancel of a queued run."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from dockyard.errors import DockyardError
from dockyard.service import queue, server
from dockyard.service.agent import Agent as AgentProcess
from dockyard.service.agent import AgentConfig
from dockyard.service.api import create_app
from dockyard.service.models import Agent, Repository, Step, now
from dockyard.service.retention import Retention
from dockyard.service.server import ServerConfig, open_service
from dockyard.service.webhooks import sign
from tests.service_api import HOOK_SECRET, SHA, Api, TestClient, hook, push, service_api


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    with service_api(tmp_path) as instance:
        yield instance


def test_tag_push_is_a_tag_run(api):
    body = push(ref="refs/tags/v1.0")
    run = hook(api, body, sign(HOOK_SECRET, body)).json()["queued"]
    assert (run["event"], run["branch"]) == ("tag", "v1.0")


def test_runs_are_paged_newest_first(api):
    for _ in range(5):
        api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    page = api.call("GET", "/repos/project/runs?per_page=2&page=2", api.admin, 200)
    assert [r["number"] for r in page["items"]] == [3, 2]
    assert (page["total"], page["next_page"]) == (5, 3)
    api.call("GET", "/repos/project/runs?per_page=1000", api.admin, 400)
    api.call("GET", "/repos/nope/runs", api.admin, 404)


def test_cancel_of_a_queued_run_is_at_once(api):
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    assert api.call("POST", "/repos/project/runs/1/cancel", api.admin, 202)["status"] == (
        "cancelled"
    )
    api.call("POST", "/repos/project/runs/1/cancel", api.admin, 409)
    logs = api.call("GET", "/repos/project/runs/1/logs", api.admin, 200)
    assert logs["status"] == "cancelled"


def test_restart_makes_a_new_run_of_the_same_commit(api):
    body = push()
    hook(api, body, sign(HOOK_SECRET, body))
    api.call("POST", "/repos/project/runs/1/restart", api.admin, 409)  # still queued
    api.call("POST", "/repos/project/runs/1/cancel", api.admin, 202)
    again = api.call("POST", "/repos/project/runs/1/restart", api.admin, 201)
    assert (again["number"], again["commit"], again["event"]) == (2, SHA, "push")
    assert again["waiting"] == "no agent is connected"


def test_the_openapi_description_lists_every_route(api):
    doc = api.call("GET", "/openapi.json", None, 200)
    assert doc["openapi"].startswith("3.")
    run = doc["paths"]["/api/v1/repos/{repo}/runs/{number}"]["get"]
    assert run["summary"].startswith("A run and its steps")
    assert [p["name"] for p in run["parameters"]] == ["repo", "number"]
    assert run["security"] == [{"token": []}]
    assert "security" not in doc["paths"]["/api/v1/hooks/{repo}"]["post"]
    assert set(doc["paths"]["/api/v1/repos/{repo}/secrets/{name}"]) == {"put", "delete"}
    assert "/api/v1/agent/poll" in doc["paths"]


def test_schedules_are_set_listed_and_deleted(api):
    path = "/repos/project/schedules/nightly"
    api.call("PUT", path, api.admin, 400, json={"schedule": "0 25 * * *"})
    read = api.token("read")
    api.call("PUT", path, read, 403, json={"schedule": "0 3 * * *"})
    set_ = api.call("PUT", path, api.admin, 200, json={"schedule": "0  3 * * *"})
    assert (set_["schedule"], set_["branch"]) == ("0 3 * * *", "main")
    assert set_["next_run"].endswith("T03:00:00Z")
    assert api.call("GET", "/repos/project/schedules", read, 200)["items"] == [set_]
    api.call("DELETE", path, api.admin, 204)
    api.call("DELETE", path, api.admin, 404)


def add_ended_runs(api: Api, count: int) -> None:
    """``count`` runs of ``project`` that ran two steps on an agent, straight into the
    database."""
    svc = api.client.app.state.service
    with svc.db.transaction() as session:
        repository = session.scalar(select(Repository).where(Repository.name == "project"))
        agent = Agent(name=f"agent-{count}", labels={}, capacity=1)
        session.add(agent)
        session.flush()
        for _ in range(count):
            run = queue.enqueue(session, repository, event="manual")
            run.status = "success"
            session.add_all(
                Step(run_id=run.id, name=name, status="success", agent_id=agent.id)
                for name in ("build", "test")
            )


def queries(api: Api, path: str) -> int:
    """How many SQL statements ``GET path`` runs."""
    engine = api.client.app.state.service.db.engine
    seen = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731 (statement)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        api.call("GET", path, api.admin, 200)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return len(seen)


def test_a_run_list_takes_the_same_few_queries_however_long_it_is(api):
    add_ended_runs(api, 2)
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})  # a queued one too
    few = queries(api, "/repos/project/runs?per_page=100")
    add_ended_runs(api, 60)
    page = api.call("GET", "/repos/project/runs?per_page=100", api.admin, 200)
    assert len(page["items"]) == 63 and page["items"][-1]["agent"] == "agent-2"
    assert page["items"][-3]["waiting"] == "no agent has os=linux"
    assert queries(api, "/repos/project/runs?per_page=100") == few <= 10


def test_the_queue_lists_every_queued_run_and_why_it_waits(api):
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    api.call("POST", "/repos/project/runs/1/cancel", api.admin, 202)
    queued = api.call("GET", "/queue", api.token("read"), 200)
    assert [(r["number"], r["labels"], r["waiting"]) for r in queued["items"]] == [
        (2, {"os": "linux"}, "no agent is connected")
    ]


def test_tokens_are_listed_without_values_and_a_revoked_one_is_refused_at_once(api):
    made = api.call("POST", "/tokens", api.admin, 201, json={"name": "ci", "role": "write"})
    agent = api.call("POST", "/tokens", api.admin, 201, json={"name": "a1", "role": "agent"})
    listed = api.call("GET", "/tokens", api.admin, 200)["items"]
    assert [(t["name"], t["role"]) for t in listed] == [
        ("admin", "admin"),
        ("ci", "write"),
        ("a1", "agent"),
    ]
    assert made["token"] not in json.dumps(listed) and "token" not in listed[1]
    api.call("GET", "/tokens", made["token"], 403)
    api.call("POST", "/repos/project/runs", made["token"], 201, json={})
    api.call("DELETE", f"/tokens/{made['id']}", api.admin, 204)
    api.call("POST", "/repos/project/runs", made["token"], 401, json={})
    api.call("DELETE", f"/tokens/{made['id']}", api.admin, 404)
    poll = {"name": "a1", "wait": 0}
    api.call("POST", "/agent/poll", agent["token"], 200, json=poll)
    api.call("DELETE", f"/tokens/{agent['id']}", api.admin, 204)
    api.call("POST", "/agent/poll", agent["token"], 401, json=poll)
    admin_id = listed[0]["id"]
    api.call("DELETE", f"/tokens/{admin_id}", api.admin, 409)  # the last way in
    other = api.call("POST", "/tokens", api.admin, 201, json={"name": "root", "role": "admin"})
    api.call("DELETE", f"/tokens/{admin_id}", other["token"], 204)
    api.call("GET", "/tokens", api.admin, 401)


def test_a_revoked_token_ends_the_log_streams_it_opened(api, monkeypatch):
    from dockyard.service.api import runs as runs_api

    monkeypatch.setattr(runs_api, "REAUTHORIZE", 0.0)  # before every read
    reader = api.call("POST", "/tokens", api.admin, 201, json={"name": "r", "role": "read"})
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    headers = {"Authorization": f"Bearer {reader['token']}", "Accept": "text/event-stream"}
    url = "/api/v1/repos/project/runs/1/logs"
    with api.client.stream("GET", url, headers=headers) as stream:
        assert stream.status_code == 200
        api.call("DELETE", f"/tokens/{reader['id']}", api.admin, 204)
        api.call("POST", "/repos/project/runs/1/cancel", api.admin, 202)  # a chunk to send
        events = [line for line in stream.iter_lines() if line.startswith("event:")]
    assert events == ["event: denied"]  # not the cancelled run's log, nor its end


def statements(api: Api, calls) -> list[str]:
    """The SQL statements ``calls()`` runs."""
    engine = api.client.app.state.service.db.engine
    seen: list[str] = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731 (statement)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        calls()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return seen


def running_agent(api: Api) -> tuple[str, dict]:
    """An agent ``a1`` (instance ``first``) holding run 1, its step running."""
    agent = api.call("POST", "/tokens", api.admin, 201, json={"name": "a1", "role": "agent"})
    me = {"name": "a1", "labels": {"os": "linux"}, "instance": "first"}
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    job = api.call("POST", "/agent/poll", agent["token"], 200, json={**me, "wait": 0})["job"]
    step = {"seq": 1, "kind": "step", "name": "test", "status": "running"}
    path = f"/agent/runs/{job['id']}/reports"
    api.call("POST", path, agent["token"], 200, json={**me, "attempt": 1, "reports": [step]})
    api.call("POST", "/agent/heartbeat", agent["token"], 200, json={**me, "runs": [job["id"]]})
    assert api.call("GET", "/repos/project/runs/1", api.admin, 200)["status"] == "running"
    return agent["token"], me


def test_a_restarted_agents_runs_go_back_to_the_queue_once_the_old_one_is_silent(api):
    token, me = running_agent(api)
    again = {**me, "instance": "second", "runs": []}  # killed and started again at once
    refused = api.call("POST", "/agent/heartbeat", token, 409, json=again)["error"]
    assert "agent a1 is connected from another process" in refused
    api.call("POST", "/agent/poll", token, 409, json={**again, "wait": 0})
    assert api.call("GET", "/repos/project/runs/1", api.admin, 200)["status"] == "running"
    api.call("POST", "/agent/heartbeat", token, 200, json={**me, "runs": [1]})  # still its own

    with api.client.app.state.service.db.transaction() as session:  # the first one went silent
        session.execute(
            update(Agent).values(last_seen=now() - timedelta(seconds=queue.AGENT_ALIVE + 1))
        )
    api.call("POST", "/agent/heartbeat", token, 200, json=again)
    run = api.call("GET", "/repos/project/runs/1", api.admin, 200)
    assert (run["status"], run["attempt"]) == ("queued", 1)
    assert [(s["status"], s["reason"]) for s in run["steps"]] == [("failure", "agent a1 restarted")]
    logs = api.call("GET", "/repos/project/runs/1/logs", api.admin, 200)["chunks"]
    assert logs[-1]["lines"] == [["", "agent a1 restarted (attempt 1); run requeued", True]]
    api.call("POST", "/agent/heartbeat", token, 409, json={**me, "runs": [1]})  # now refused


def test_an_agent_that_says_goodbye_hands_its_runs_and_name_over_at_once(api):
    token, me = running_agent(api)
    assert api.call("POST", "/agent/goodbye", token, 200, json=me) == {"released": [1]}
    run = api.call("POST", "/agent/poll", token, 200, json={**me, "instance": "next", "wait": 0})
    assert (run["job"]["id"], run["job"]["attempt"]) == (1, 2)
    logs = api.call("GET", "/repos/project/runs/1/logs", api.admin, 200)["chunks"]
    assert ["", "agent a1 stopped (attempt 1); run requeued", True] in logs[-1]["lines"]


def test_a_heartbeat_writes_the_agent_row_only_when_something_changed(api):
    agent = api.call("POST", "/tokens", api.admin, 201, json={"name": "a1", "role": "agent"})
    me = {"name": "a1", "labels": {"os": "linux"}, "instance": "i", "runs": []}

    def beats() -> None:
        for _ in range(5):
            api.call("POST", "/agent/heartbeat", agent["token"], 200, json=me)

    first = statements(api, beats)
    assert sum(s.startswith("INSERT INTO agents") for s in first) == 1
    assert not any(s.startswith("UPDATE agents") for s in first)
    assert not any(s.startswith("UPDATE agents") for s in statements(api, beats))
    changed = statements(
        api,
        lambda: api.call(
            "POST", "/agent/heartbeat", agent["token"], 200, json={**me, "capacity": 2}
        ),
    )
    assert [
        s.split(" SET ")[1].split("=")[0] for s in changed if s.startswith("UPDATE agents")
    ] == ["capacity"]
    assert api.call("GET", "/agents", api.admin, 200)["items"][0]["capacity"] == 2


def test_the_server_applies_its_retention_policy_by_itself(tmp_path):
    with service_api(tmp_path, Retention(keep_runs=1)) as api:
        add_ended_runs(api, 3)
        deadline = time.monotonic() + 30
        while api.runs() > 1:  # the housekeeping task's first pass, within a second or so
            assert time.monotonic() < deadline, "no retention pass"
            time.sleep(0.1)
        assert [
            r["number"] for r in api.call("GET", "/repos/project/runs", api.admin, 200)["items"]
        ] == [3]


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x.yml", "ci/../../x", "./ci.yml", "ci//x.yml", "ci/", "a\0b", ""]
)
def test_a_pipeline_path_is_plain_and_relative(api, path):
    doc = {"name": "other", "clone_url": "git://127.0.0.1:1/o.git", "pipeline_path": path}
    assert "pipeline_path" in api.call("POST", "/repos", api.admin, 400, json=doc)["error"]


@pytest.mark.filterwarnings("ignore:You should not use the .timeout. argument")
def test_a_second_agent_process_under_one_name_waits_for_the_first_to_stop(api, tmp_path):
    token = api.token("agent")
    api.client.headers["Authorization"] = f"Bearer {token}"
    config = AgentConfig(server="http://testserver", token=token, name="a1", workdir=tmp_path)
    first, second = AgentProcess(config), AgentProcess(config)
    first.client = second.client = api.client  # the real server, in-process
    assert first._claim_name()
    claimed = threading.Event()
    waiter = threading.Thread(target=lambda: second._claim_name() and claimed.set())
    waiter.start()
    try:
        assert not claimed.wait(2.5)  # refused at each try while the first one lives
        first.stop()  # says goodbye
        assert claimed.wait(30)
    finally:
        second._stopping.set()
        waiter.join()
    (agent,) = api.call("GET", "/agents", api.admin, 200)["items"]
    assert agent["name"] == "a1"


def test_a_restart_needs_the_labels_its_first_run_learned(api):
    token = api.token("agent")
    me = {"name": "a1", "labels": {"os": "linux"}, "instance": "i"}
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    job = api.call("POST", "/agent/poll", token, 200, json={**me, "wait": 0})["job"]
    asks = {"seq": 1, "kind": "labels", "labels": {"gpu": "true"}}
    path = f"/agent/runs/{job['id']}/reports"
    api.call("POST", path, token, 200, json={**me, "attempt": 1, "reports": [asks]})
    api.call("POST", "/repos/project/runs/1/cancel", api.admin, 202)  # handed back, queued
    again = api.call("POST", "/repos/project/runs/1/restart", api.admin, 201)
    assert again["labels"] == {"os": "linux", "gpu": "true"}
    assert again["waiting"] == "no agent has gpu=true"
    assert api.call("POST", "/agent/poll", token, 200, json={**me, "wait": 0})["job"] is None


def test_a_server_starting_again_frees_its_local_agents_name_and_runs(api):
    svc = api.client.app.state.service
    name = server.local_agent_name(ServerConfig(addr="127.0.0.1:0", data=api.data))
    token = server._local_agent_token(svc, name)
    me = {"name": name, "labels": {"os": "linux"}, "instance": "old"}
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    assert api.call("POST", "/agent/poll", token, 200, json={**me, "wait": 0})["job"]["id"] == 1

    token = server._local_agent_token(svc, name)  # the next start: its agent died with it
    api.call("POST", "/agent/heartbeat", token, 200, json={**me, "instance": "new", "runs": []})
    run = api.call("GET", "/repos/project/runs/1", api.admin, 200)
    assert (run["status"], run["attempt"]) == ("queued", 1)


def test_a_local_agent_is_named_for_its_host_and_data_dir(tmp_path):
    name = server.default_local_agent_name(tmp_path / "a")
    assert name == server.default_local_agent_name(tmp_path / "a" / ".." / "a")  # each start
    assert name.startswith(f"local-{socket.gethostname()[:63]}-")
    assert server.default_local_agent_name(tmp_path / "b") != name
    config = ServerConfig(addr="127.0.0.1:0", data=tmp_path / "a", local_agent_name="ci-1")
    assert server.local_agent_name(config) == "ci-1"


def test_a_local_agent_never_takes_another_agents_name(api):
    svc = api.client.app.state.service
    remote = api.token("agent")
    api.call("POST", "/agent/poll", remote, 200, json={"name": "builder", "wait": 0})
    with pytest.raises(DockyardError, match="agent name builder belongs to another"):
        server._local_agent_token(svc, "builder")
    (agent,) = api.call("GET", "/agents", api.admin, 200)["items"]
    assert agent["name"] == "builder"


def test_servers_on_one_postgresql_each_have_a_local_agent_of_their_own(tmp_path, request):
    """Two servers on one database, each with its local agent holding a run: both agents
    stay live, and a start (or restart) of one server requeues only its own agent's runs."""
    database = request.getfixturevalue("postgres_database")
    with service_api(tmp_path / "a", database=database) as a:
        config = ServerConfig(addr="127.0.0.1:0", data=tmp_path / "b" / "data", database=database)
        with TestClient(create_app(open_service(config))) as client:
            b = Api(client, a.data)  # the first server's admin token is the only one
            agents = {}
            for api in (a, b):
                svc = api.client.app.state.service
                data = api.data if api is a else config.data
                name = server.local_agent_name(ServerConfig(addr="127.0.0.1:0", data=data))
                agents[name] = (svc, server._local_agent_token(svc, name))  # the server starts
                me = {"name": name, "labels": {"os": "linux"}, "instance": "first"}
                api.call("POST", "/repos/project/runs", api.admin, 201, json={})
                job = api.call("POST", "/agent/poll", agents[name][1], 200, json={**me, "wait": 0})
                assert job["job"]["attempt"] == 1
            (name_a, (_, token_a)), (name_b, (svc_b, _)) = agents.items()
            assert name_a != name_b
            listed = a.call("GET", "/agents", a.admin, 200)["items"]
            assert {x["name"]: x["running"] for x in listed} == {name_a: 1, name_b: 1}
            token_b = server._local_agent_token(svc_b, name_b)  # the second server restarts
            for number, status in ((1, "running"), (2, "queued")):
                run = b.call("GET", f"/repos/project/runs/{number}", b.admin, 200)
                assert (run["status"], run["attempt"]) == (status, 1)
            me_a = {"name": name_a, "labels": {"os": "linux"}, "instance": "first", "runs": [1]}
            assert a.call("POST", "/agent/heartbeat", token_a, 200, json=me_a)["stop"] == []
            b.call("POST", "/agent/heartbeat", token_b, 403, json=me_a)  # not B's to free
            b.call("POST", "/agent/heartbeat", token_a, 409, json={**me_a, "instance": "2nd"})
            me_b = {"name": name_b, "labels": {"os": "linux"}, "instance": "second"}
            job = b.call("POST", "/agent/poll", token_b, 200, json={**me_b, "wait": 0})["job"]
            assert job["id"] == 2
