"""The web UI's users through the API: added with a bcrypt hash, passwords checked
against the rules, never returned; only an admin manages them."""

from __future__ import annotations

from collections.abc import Iterator

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
