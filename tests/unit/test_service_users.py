"""The web UI's users through the API: added with a bcrypt hash, passwords checked
against the rules, never returned; only an admin manages them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from sqlalchemy import select

from dockyard.service import users
from dockyard.service.models import User
from tests.service_api import Api, service_api


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    with service_api(tmp_path) as instance:
        yield instance


def test_users_are_added_with_a_bcrypt_hash_and_listed_without_it(api):
    body = {"name": "ada", "role": "write", "password": "correct horse"}
    assert api.call("POST", "/users", api.admin, 201, json=body) == {"name": "ada", "role": "write"}
    api.call("POST", "/users", api.admin, 409, json=body)
    listed = api.call("GET", "/users", api.admin, 200)["items"]
    assert [(u["name"], u["role"]) for u in listed] == [("ada", "write")]
    assert "correct horse" not in str(listed) and "$2b$" not in str(listed)
    with api.client.app.state.service.db.transaction() as session:
        stored = session.scalar(select(User.password).where(User.name == "ada"))
    assert stored.startswith("$2b$12$")
    assert bcrypt.checkpw(b"correct horse", stored.encode())


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"name": "ada", "role": "write", "password": "short"}, "at least 8"),
        ({"name": "ada", "role": "write", "password": "é" * 40}, "at most 72 bytes"),
        ({"name": "ada", "role": "agent", "password": "correct horse"}, "role"),
        ({"name": "../ada", "role": "read", "password": "correct horse"}, "name"),
    ],
)
def test_bad_users_are_refused(api, body, error):
    assert error in api.call("POST", "/users", api.admin, 400, json=body)["error"]


def test_only_an_admin_manages_users(api):
    body = {"name": "ada", "role": "admin", "password": "correct horse"}
    api.call("POST", "/users", api.token("write"), 403, json=body)
    api.call("GET", "/users", api.token("read"), 403)
    api.call("PUT", "/users/nobody/password", api.admin, 404, json={"password": "long enough"})
    api.call("DELETE", "/users/nobody", api.admin, 404)


def test_an_unknown_name_is_checked_against_a_hash_too():
    assert users.verify(None, "anything at all") is False
    real = users.hash_password("correct horse")
    assert users.verify(real, "correct horse") and not users.verify(real, "correct horsf")


def server_user(data: Path, *args: str, stdin: str = "", expect: int = 0) -> str:
    """``dockyard server user ARGS --data DATA``: the database opened directly."""
    done = subprocess.run(
        [sys.executable, "-m", "dockyard.cli.main", "server", "user", *args, "--data", str(data)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == expect, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_the_first_admin_is_added_without_a_running_server(tmp_path):
    data = tmp_path / "data"
    server_user(data, "add", "root", "--role", "admin", stdin="correct horse\n")
    server_user(data, "add", "ada", stdin="correct horse\n")
    assert "exists already" in server_user(data, "add", "ada", stdin="correct horse\n", expect=1)
    assert "at least 8" in server_user(data, "passwd", "ada", stdin="short\n", expect=1)
    server_user(data, "passwd", "root", stdin="battery staple\n")
    server_user(data, "rm", "ada")
    assert "no user named 'ada'" in server_user(data, "rm", "ada", expect=1)
    listed = server_user(data, "ls").splitlines()
    assert [line.split()[:2] for line in listed] == [["USER", "ROLE"], ["root", "admin"]]

    with service_api(tmp_path) as api:  # the server on that data dir: root signs in
        form = {"name": "root", "password": "battery staple"}
        api.client.post("/login", data={**form, "password": "correct horse"})
        assert api.client.get("/secrets", follow_redirects=False).status_code == 303
        api.client.post("/login", data=form)
        assert api.client.get("/secrets", follow_redirects=False).status_code == 200  # admin
