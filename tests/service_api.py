"""Helpers for tests of the CI service's API in-process: a server on SQLite in a temp
dir behind Starlette's test client, with one repository ``project``."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from dockyard.service.api import create_app
from dockyard.service.retention import Retention
from dockyard.service.server import ADMIN_TOKEN_FILE, ServerConfig, open_service

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


@contextlib.contextmanager
def service_api(
    tmp_path: Path, retention: Retention | None = None, database: str | None = None
) -> Iterator[Api]:
    """The service on SQLite under ``tmp_path``, or on the ``database`` URL."""
    data = tmp_path / "data"
    config = ServerConfig(addr="127.0.0.1:0", data=data, database=database, local_agent=False)
    if retention is not None:
        config.retention = retention
    svc = open_service(config)
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


def hook(api: Api, body: bytes, signature: str | None, event: str = "push"):
    headers = {"X-GitHub-Event": event}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return api.client.post("/api/v1/hooks/project", content=body, headers=headers)


def push(ref: str = "refs/heads/main", after: str = SHA) -> bytes:
    return json.dumps(
        {"ref": ref, "after": after, "head_commit": {"message": "m", "author": {"name": "Ada"}}}
    ).encode()
