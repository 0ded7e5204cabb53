"""The CI service's REST API in-process (Starlette's test client, SQLite in a temp dir):
roles, webhook signatures, bounded bodies, write-only secrets, paging, the key file."""

from __future__ import annotations

import json
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from dockyard.service.api import JSON_MAX, create_app
from dockyard.service.secrets import (
    SecretBox,
    SecretKeyError,
    load_or_create_key,
    secret_context,
)
from dockyard.service.server import ADMIN_TOKEN_FILE, ServerConfig, open_service
from dockyard.service.webhooks import sign

HOOK_SECRET = "0123456789abcdef-hook"
SHA = "3" * 40


class Api:
    def __init__(self, client: TestClient, data: Path):
        self.client = client
        self.data = data
        self.admin = (data / ADMIN_TOKEN_FILE).read_text().strip()

    def call(self, method: str, path: str, token: str | None, expect: int, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.client.request(method, "/api/v1" + path, headers=headers, **kwargs)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    def token(self, role: str) -> str:
        return self.call("POST", "/tokens", self.admin, 201, json={"name": role, "role": role})[
            "token"
        ]

    def runs(self) -> int:
        return self.call("GET", "/repos/project/runs", self.admin, 200)["total"]


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    data = tmp_path / "data"
    svc = open_service(ServerConfig(addr="127.0.0.1:0", data=data, local_agent=False))
    with TestClient(create_app(svc)) as client:
        instance = Api(client, data)
        instance.call(
            "POST",
            "/repos",
            instance.admin,
            201,
            json={
                "name": "project",
                "clone_url": "git://127.0.0.1:1/p.git",
                "webhook_secret": HOOK_SECRET,
                "labels": {"os": "linux"},
            },
        )
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


def hook(api: Api, body: bytes, signature: str | None, event: str = "push"):
    headers = {"X-GitHub-Event": event}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return api.client.post("/api/v1/hooks/project", content=body, headers=headers)


def push(ref: str = "refs/heads/main", after: str = SHA) -> bytes:
    return json.dumps(
        {"ref": ref, "after": after, "head_commit": {"message": "m", "author": {"name": "Ada"}}}
    ).encode()


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


def test_tag_push_is_a_tag_run(api):
    body = push(ref="refs/tags/v1.0")
    run = hook(api, body, sign(HOOK_SECRET, body)).json()["queued"]
    assert (run["event"], run["branch"]) == ("tag", "v1.0")


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
