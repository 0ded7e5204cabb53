"""A docker-registry with basic auth (htpasswd), and clients that have no credentials
but those a test writes (the ``auth_env`` fixture)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import need, start_docker_registry, stop

USER, PASSWORD = "alice", "s3cret"


@pytest.fixture
def auth_env(tmp_path, monkeypatch) -> Path:
    """No credentials anywhere but the returned auth file (absent until written)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("DOCKER_CONFIG", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    auth_file = tmp_path / "auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    return auth_file


@contextmanager
def registry_env() -> Iterator[None]:
    """No ``REGISTRY_*`` variables: docker-registry reads them as config overrides, and
    ``REGISTRY_AUTH_FILE`` (ours, for the client) would become its ``auth.file``."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("REGISTRY_")]:
            mp.delenv(name)
        yield


def write_auths(path: Path, host: str, **entry: str) -> None:
    path.write_text(json.dumps({"auths": {host: entry}}))


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory):
    need("htpasswd")
    workdir = tmp_path_factory.mktemp("basic-registry")
    entry = subprocess.run(
        ["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
    ).stdout.strip()
    (workdir / "htpasswd").write_text(entry + "\n")
    with registry_env():
        registry = start_docker_registry(
            workdir, f"auth: {{htpasswd: {{realm: dockyard-test, path: {workdir / 'htpasswd'}}}}}\n"
        )
    yield registry
    stop(registry)
