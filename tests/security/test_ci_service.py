"""Attacks on the CI service's API (in-process, SQLite in a temp dir): forged or
tampered webhooks, tokens used beyond their role, oversized bodies, secrets read back
or found at rest, a key file others can read, sealed values moved between rows."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator

import pytest

from dockyard.service.api import JSON_MAX
from dockyard.service.secrets import SecretBox, SecretKeyError, load_or_create_key, secret_context
from dockyard.service.webhooks import sign
from tests.service_api import HOOK_SECRET, SHA, Api, hook, push, service_api


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    with service_api(tmp_path) as instance:
        yield instance


def test_roles_decide_who_may_do_what(api):
    read, write, agent = api.token("read"), api.token("write"), api.token("agent")
    api.call("GET", "/repos", None, 401)
    api.call("GET", "/repos", "dyt_not-a-token", 401)
    api.call("GET", "/repos", read, 200)
    api.call("POST", "/repos/project/runs", read, 403, json={})
    api.call("POST", "/repos/project/runs", write, 201, json={})
    api.call("PUT", "/repos/project/secrets/X", write, 403, json={"value": "v"})
    api.call("POST", "/tokens", write, 403, json={"name": "x", "role": "admin"})
    # An agent token is no user token, and a user token (even admin) no agent token.
    api.call("GET", "/repos", agent, 403)
    api.call("POST", "/agent/poll", api.admin, 403, json={"name": "a", "wait": 0})
    assert api.call("POST", "/agent/poll", agent, 200, json={"name": "a", "wait": 0})["job"] is None


def test_webhook_without_the_right_signature_queues_nothing(api):
    body = push()
    assert hook(api, body, None).status_code == 401
    assert hook(api, body, sign("another secret", body)).status_code == 401
    assert hook(api, body, "sha256=" + "0" * 64).status_code == 401
    assert hook(api, body, sign(HOOK_SECRET, body)[:-1]).status_code == 401
    tampered = body.replace(b"main", b"evil")
    assert hook(api, tampered, sign(HOOK_SECRET, body)).status_code == 401
    assert api.runs() == 0
    response = hook(api, body, sign(HOOK_SECRET, body))
    assert response.status_code == 201
    run = response.json()["queued"]
    assert (run["event"], run["branch"], run["commit"], run["author"]) == (
        "push",
        "main",
        SHA,
        "Ada",
    )
    assert api.runs() == 1


@pytest.mark.parametrize(
    "body, event, status",
    [
        (b"not json", "push", 400),
        (b"[]", "push", 400),
        (push(after="zz"), "push", 400),
        (push(ref="refs/notes/x"), "push", 400),
        (push(), "issues", 400),
        (push(after="0" * 40), "push", 200),  # a deleted branch
        (b"{}", "ping", 200),
    ],
)
def test_signed_payloads_that_are_no_push_queue_nothing(api, body, event, status):
    assert hook(api, body, sign(HOOK_SECRET, body), event).status_code == status
    assert api.runs() == 0


def test_oversized_bodies_are_refused_before_anything_changes(api):
    big = json.dumps({"branch": "main", "env": {"A": "x" * JSON_MAX}})
    api.call("POST", "/repos/project/runs", api.admin, 413, content=big)
    api.call("POST", "/repos/project/runs", api.admin, 400, content=b"{nope")
    api.call("POST", "/repos/project/runs", api.admin, 400, json={"env": {"1BAD": "x"}})
    assert api.runs() == 0


def test_secrets_are_write_only_and_sealed_at_rest(api):
    api.call("PUT", "/repos/project/secrets/TOKEN", api.admin, 204, json={"value": "hunter2-xyz"})
    listed = api.call("GET", "/repos/project/secrets", api.admin, 200)
    assert listed == {"items": [{"name": "TOKEN"}]}
    assert b"hunter2-xyz" not in (api.data / "dockyard.db").read_bytes()
    assert b"hunter2-xyz" not in (api.data / "dockyard.db-wal").read_bytes()
    api.call("PUT", "/repos/project/secrets/bad-name", api.admin, 400, json={"value": "v"})
    # Only an agent holding a run of the repository gets the value.
    agent = api.token("agent")
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    api.call(
        "POST",
        "/agent/runs/1/secrets",
        agent,
        409,
        json={"name": "a", "attempt": 1, "names": ["TOKEN"]},
    )
    job = api.call(
        "POST", "/agent/poll", agent, 200, json={"name": "a", "labels": {"os": "linux"}, "wait": 0}
    )["job"]
    got = api.call(
        "POST",
        f"/agent/runs/{job['id']}/secrets",
        agent,
        200,
        json={"name": "a", "attempt": job["attempt"], "names": ["TOKEN", "NONE"]},
    )
    assert got == {"secrets": {"TOKEN": "hunter2-xyz"}}
    api.call("DELETE", "/repos/project/secrets/TOKEN", api.admin, 204)
    api.call("DELETE", "/repos/project/secrets/TOKEN", api.admin, 404)


def test_the_key_file_is_private_and_made_once(tmp_path):
    path = tmp_path / "secret.key"
    keys: list[bytes] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        keys.append(load_or_create_key(path))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]  # no temporaries left
    path.chmod(0o644)
    with pytest.raises(SecretKeyError, match="readable by others"):
        load_or_create_key(path)


def test_a_sealed_value_opens_only_where_it_belongs(tmp_path):
    box = SecretBox(os.urandom(32))
    sealed = box.seal("value", secret_context(1, "A"))
    assert box.open(sealed, secret_context(1, "A")) == "value"
    with pytest.raises(SecretKeyError):
        box.open(sealed, secret_context(2, "A"))  # copied to another repository's row
    with pytest.raises(SecretKeyError):
        SecretBox(os.urandom(32)).open(sealed, secret_context(1, "A"))


def pull_request(number: int, head_repo: str, base_repo: str = "org/project") -> bytes:
    return json.dumps(
        {
            "action": "opened",
            "number": number,
            "pull_request": {
                "title": "a change",
                "user": {"login": "mallory"},
                "head": {"sha": SHA, "ref": "feature", "repo": {"full_name": head_repo}},
                "base": {"ref": "main", "repo": {"full_name": base_repo}},
            },
        }
    ).encode()


def secrets_for_next_run(api: Api, agent: str) -> dict[str, str]:
    job = api.call(
        "POST", "/agent/poll", agent, 200, json={"name": "a", "labels": {"os": "linux"}, "wait": 0}
    )["job"]
    return api.call(
        "POST",
        f"/agent/runs/{job['id']}/secrets",
        agent,
        200,
        json={"name": "a", "attempt": job["attempt"], "names": ["TOKEN"]},
    )["secrets"]


def test_pull_requests_from_forks_get_no_secrets(api):
    api.call("PUT", "/repos/project/secrets/TOKEN", api.admin, 204, json={"value": "v-123456"})
    agent = api.token("agent")
    for number, head_repo in ((1, "mallory/project"), (2, "org/project")):
        body = pull_request(number, head_repo)
        response = hook(api, body, sign(HOOK_SECRET, body), "pull_request")
        assert response.status_code == 201, response.text
        run = response.json()["queued"]
        assert (run["event"], run["branch"], run["fork"]) == (
            "pull_request",
            "main",
            number == 1,
        )
    assert secrets_for_next_run(api, agent) == {}  # the fork's
    assert secrets_for_next_run(api, agent) == {"TOKEN": "v-123456"}  # the repository's own
    # A repository may choose to trust forks.
    repo = {"name": "trusting", "clone_url": "git://127.0.0.1:1/t.git", "fork_secrets": True}
    api.call("POST", "/repos", api.admin, 201, json={**repo, "webhook_secret": HOOK_SECRET})
    api.call("PUT", "/repos/trusting/secrets/TOKEN", api.admin, 204, json={"value": "t-123456"})
    body = pull_request(4, "mallory/project")
    headers = {"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": sign(HOOK_SECRET, body)}
    assert api.client.post("/api/v1/hooks/trusting", content=body, headers=headers).json()[
        "queued"
    ]["fork"]
    assert secrets_for_next_run(api, agent) == {"TOKEN": "t-123456"}
    closed = json.loads(pull_request(3, "mallory/project"))
    closed["action"] = "closed"
    body = json.dumps(closed).encode()
    assert hook(api, body, sign(HOOK_SECRET, body), "pull_request").json() == {"queued": None}


def test_a_clone_url_that_is_a_git_option_is_refused(api):
    api.call(
        "POST",
        "/repos",
        api.admin,
        400,
        json={"name": "evil", "clone_url": "--upload-pack=touch /tmp/x", "labels": {}},
    )


def test_artifacts_take_no_path_from_a_request_to_the_filesystem(api):
    agent = api.token("agent")
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    params = {"name": "a", "attempt": "1", "step": "build", "path": "dist/app.bin"}
    # Not yet held: refused before a byte is stored.
    api.call("PUT", "/agent/runs/1/artifacts", agent, 409, params=params, content=b"x")
    job = api.call(
        "POST", "/agent/poll", agent, 200, json={"name": "a", "labels": {"os": "linux"}, "wait": 0}
    )["job"]
    for bad in ("../../etc/passwd", "/etc/passwd", "dist/../x", "dist//x", "a/./b", ""):
        api.call(
            "PUT",
            "/agent/runs/1/artifacts",
            agent,
            400,
            params={**params, "path": bad},
            content=b"x",
        )
    api.call("PUT", "/agent/runs/1/artifacts", api.admin, 403, params=params, content=b"x")
    stored = api.call(
        "PUT", f"/agent/runs/{job['id']}/artifacts", agent, 201, params=params, content=b"\0bin"
    )
    assert stored["size"] == 4 and stored["digest"].startswith("sha256:")
    listed = api.call("GET", "/repos/project/runs/1/artifacts", api.admin, 200)["items"]
    assert listed == [{"step": "build", "path": "dist/app.bin", **stored}]
    response = api.client.get(
        "/api/v1/repos/project/runs/1/artifacts/build/dist/app.bin",
        headers={"Authorization": f"Bearer {api.admin}"},
    )
    assert response.content == b"\0bin"
    assert response.headers["content-type"] == "application/octet-stream"
    assert "attachment" in response.headers["content-disposition"]
    for missing in ("build/../../secret.key", "build/dist/other", "other/dist/app.bin"):
        api.call("GET", f"/repos/project/runs/1/artifacts/{missing}", api.admin, 404)
    files = [p.name for p in (api.data / "artifacts" / "sha256").iterdir()]
    assert files == [stored["digest"].split(":")[1]]


def test_global_secrets_reach_every_repository_unless_it_has_its_own(api):
    write = api.token("write")
    api.call("PUT", "/secrets/REGISTRY", write, 403, json={"value": "x"})
    api.call("PUT", "/secrets/REGISTRY", api.admin, 204, json={"value": "global-1"})
    api.call("PUT", "/secrets/TOKEN", api.admin, 204, json={"value": "global-2"})
    api.call("PUT", "/secrets/TOKEN", api.admin, 204, json={"value": "global-3"})  # replaced
    api.call("PUT", "/repos/project/secrets/TOKEN", api.admin, 204, json={"value": "own-4"})
    assert api.call("GET", "/secrets", api.admin, 200)["items"] == [
        {"name": "REGISTRY"},
        {"name": "TOKEN"},
    ]
    agent = api.token("agent")
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    job = api.call(
        "POST", "/agent/poll", agent, 200, json={"name": "a", "labels": {"os": "linux"}, "wait": 0}
    )["job"]
    got = api.call(
        "POST",
        f"/agent/runs/{job['id']}/secrets",
        agent,
        200,
        json={"name": "a", "attempt": 1, "names": ["TOKEN", "REGISTRY"]},
    )["secrets"]
    assert got == {"TOKEN": "own-4", "REGISTRY": "global-1"}
    for value in (b"global-1", b"global-3", b"own-4"):
        assert value not in (api.data / "dockyard.db").read_bytes()
        assert value not in (api.data / "dockyard.db-wal").read_bytes()
    api.call("DELETE", "/secrets/TOKEN", api.admin, 204)
    api.call("DELETE", "/secrets/TOKEN", api.admin, 404)


def test_an_agent_token_cannot_act_as_another_agent(api):
    """An agent name belongs to the token that first used it: a second agent token
    naming it gets neither its runs' secrets, nor its leases, nor its uploads."""
    first, second = api.token("agent"), api.token("agent")
    api.call("PUT", "/repos/project/secrets/TOKEN", api.admin, 204, json={"value": "s3cret"})
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    poll = {"name": "a", "labels": {"os": "linux"}, "wait": 0}
    job = api.call("POST", "/agent/poll", first, 200, json=poll)["job"]
    held = {"name": "a", "attempt": job["attempt"], "names": ["TOKEN"]}
    api.call("POST", f"/agent/runs/{job['id']}/secrets", second, 403, json=held)
    api.call("POST", "/agent/poll", second, 403, json=poll)
    api.call("POST", "/agent/heartbeat", second, 403, json={"name": "a", "runs": [job["id"]]})
    upload = f"/agent/runs/{job['id']}/artifacts?name=a&attempt={job['attempt']}&step=s&path=f"
    api.call("PUT", upload, second, 403, content=b"x")
    # the owner still can, and a token of its own is free to use another name
    secrets = api.call("POST", f"/agent/runs/{job['id']}/secrets", first, 200, json=held)
    assert secrets["secrets"] == {"TOKEN": "s3cret"}
    assert api.call("POST", "/agent/poll", second, 200, json={**poll, "name": "b"})["job"] is None
