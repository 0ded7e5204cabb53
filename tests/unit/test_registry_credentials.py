"""Credential lookup from docker/podman auth files and credential helpers (no network)."""

import base64
import json
import sys
from pathlib import Path

import pytest

from dockyard.errors import AuthError
from dockyard.registry.client import Credentials
from dockyard.registry.client import credentials as creds

# A docker credential helper keeping its secrets in $FAKE_HELPER_DB (a JSON file).
HELPER = f"""#!{sys.executable}
import json, os, sys
db_path = os.environ["FAKE_HELPER_DB"]
db = json.load(open(db_path)) if os.path.exists(db_path) else {{}}
action, data = sys.argv[1], sys.stdin.read()
with open(db_path + ".log", "a") as log:
    log.write(action + " " + data.strip() + "\\n")
if action == "get":
    if data not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    json.dump({{"ServerURL": data, **db[data]}}, sys.stdout)
elif action == "store":
    entry = json.loads(data)
    db[entry["ServerURL"]] = {{"Username": entry["Username"], "Secret": entry["Secret"]}}
    json.dump(db, open(db_path, "w"))
elif action == "erase":
    if db.pop(data, None) is None:
        print("credentials not found in native keychain")
        sys.exit(1)
    json.dump(db, open(db_path, "w"))
else:
    print("boom: unknown action")
    sys.exit(2)
"""


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """An empty HOME, no auth variables, and the fake ``docker-credential-test`` on PATH."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-test"
    helper.write_text(HELPER)
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_HELPER_DB", str(tmp_path / "helper.json"))
    return tmp_path


def helper_db(env: Path, entries: dict) -> None:
    (env / "helper.json").write_text(json.dumps(entries))


def helper_calls(env: Path) -> list[str]:
    log = env / "helper.json.log"
    return log.read_text().splitlines() if log.exists() else []


def auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def write(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_auths_entries_and_key_spellings():
    doc = {
        "auths": {
            "https://quay.io": {"auth": auth("q", "pw:with:colons")},
            "http://h:5000/v1/": {"auth": auth("h", "p")},
            "https://index.docker.io/v1/": {"auth": auth("hub", "hp")},
            "empty.example": {},
        }
    }
    assert creds.from_config(doc, "quay.io") == Credentials("q", "pw:with:colons")
    assert creds.from_config(doc, "h:5000") == Credentials("h", "p")
    for hub in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        assert creds.from_config(doc, hub) == Credentials("hub", "hp")
    assert creds.from_config(doc, "empty.example") is None
    assert creds.from_config(doc, "h:5001") is None


def test_identity_token():
    doc = {"auths": {"r.example": {"auth": auth("me", ""), "identitytoken": "refresh"}}}
    assert creds.from_config(doc, "r.example") == Credentials("me", identity_token="refresh")


def test_secrets_stay_out_of_repr():
    text = repr(Credentials("me", "hunter2", "tok"))
    assert "hunter2" not in text and "tok" not in text and "me" in text


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"auths": {"r": {"auth": "***"}}}, "'auth' is not base64"),
        ({"auths": {"r": "x"}}, "expected an object"),
        ({"auths": ["r"]}, "'auths' must be an object"),
    ],
)
def test_malformed_entries_are_named(doc, message):
    with pytest.raises(AuthError, match=message):
        creds.from_config(doc, "r", "cfg.json")


def test_cred_helpers_run_with_the_host_on_stdin(env):
    helper_db(env, {"r.example": {"Username": "u", "Secret": "s"}})
    doc = {
        "auths": {"r.example": {"auth": auth("file", "ignored")}},
        "credHelpers": {"r.example": "test"},
    }
    assert creds.from_config(doc, "r.example") == Credentials("u", "s")
    assert helper_calls(env) == ["get r.example"]


def test_helper_token_user_means_identity_token(env):
    helper_db(env, {"r.example": {"Username": "<token>", "Secret": "refresh"}})
    assert creds.from_config({"credsStore": "test"}, "r.example") == Credentials(
        identity_token="refresh"
    )


def test_creds_store_is_asked_with_docker_hubs_key(env):
    helper_db(env, {"https://index.docker.io/v1/": {"Username": "hub", "Secret": "s"}})
    assert creds.from_config({"credsStore": "test"}, "registry-1.docker.io") == Credentials(
        "hub", "s"
    )
    assert helper_calls(env) == ["get https://index.docker.io/v1/"]


def test_helper_without_the_host_means_no_credentials(env):
    helper_db(env, {})
    assert creds.from_config({"credsStore": "test"}, "r.example") is None
    # A plain auths entry wins over the store.
    doc = {"credsStore": "test", "auths": {"r.example": {"auth": auth("a", "b")}}}
    assert creds.from_config(doc, "r.example") == Credentials("a", "b")


def test_helper_failures_are_clear(env):
    with pytest.raises(AuthError, match="docker-credential-missing is configured but not on PATH"):
        creds.from_config({"credHelpers": {"r": "missing"}}, "r")
    with pytest.raises(AuthError, match="docker-credential-test nope failed: boom"):
        creds._run_helper("test", "nope", "")


def test_files_are_searched_in_order(env, monkeypatch):
    runtime = env / "run"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    podman = write(
        runtime / "containers/auth.json", {"auths": {"a": {"auth": auth("podman", "1")}}}
    )
    home = write(env / "home/.docker/config.json", {"auths": {"a": {"auth": auth("home", "2")}}})
    assert creds.auth_files() == [home, podman]
    assert creds.lookup("a") == Credentials("home", "2")

    docker_config = env / "dc"
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    write(docker_config / "config.json", {"auths": {"b": {"auth": auth("dc", "3")}}})
    registry_file = write(env / "auth.json", {"auths": {"c": {"auth": auth("raf", "4")}}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(registry_file))
    assert creds.auth_files() == [registry_file, docker_config / "config.json", home, podman]
    # The first file that knows the host wins; later files fill in other hosts.
    assert creds.lookup("a") == Credentials("home", "2")
    assert creds.lookup("b") == Credentials("dc", "3")
    assert creds.lookup("c") == Credentials("raf", "4")
    assert creds.lookup("d") is None


def test_invalid_json_names_the_file(env, monkeypatch):
    bad = env / "auth.json"
    bad.write_text("{nope")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(bad))
    with pytest.raises(AuthError, match=f"{bad}: invalid JSON"):
        creds.lookup("r")


def test_store_and_erase_plain(env, monkeypatch):
    path = env / "docker/config.json"
    monkeypatch.setenv("DOCKER_CONFIG", str(path.parent))
    write(path, {"auths": {"keep": {"auth": "a2VlcDpr"}}, "HttpHeaders": {"X": "y"}})
    assert creds.store("docker.io", Credentials("me", "pw")) == path
    doc = json.loads(path.read_text())
    assert doc["HttpHeaders"] == {"X": "y"}
    assert doc["auths"]["https://index.docker.io/v1/"] == {"auth": auth("me", "pw")}
    assert path.stat().st_mode & 0o777 == 0o600
    assert creds.lookup("registry-1.docker.io") == Credentials("me", "pw")

    assert creds.erase("index.docker.io") is True
    assert json.loads(path.read_text())["auths"] == {"keep": {"auth": "a2VlcDpr"}}
    assert creds.erase("docker.io") is False
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json"]


def test_store_and_erase_through_the_helper(env, monkeypatch):
    path = write(env / "home/.docker/config.json", {"credsStore": "test", "auths": {"r": {}}})
    creds.store("r", Credentials("u", "s"))
    assert json.loads(path.read_text())["auths"] == {}  # no secret in the file
    assert json.loads((env / "helper.json").read_text()) == {"r": {"Username": "u", "Secret": "s"}}
    assert creds.lookup("r") == Credentials("u", "s")
    assert creds.erase("r") is True
    assert creds.lookup("r") is None
    assert creds.erase("r") is False


# -- a run's own credentials (registry_auth) ----------------------------------------------


def test_from_auth_config_reads_auths_by_host():
    pair = base64.b64encode(b"ci:pw").decode()
    doc = {"auths": {"reg.example:5000": {"auth": pair}, "https://index.docker.io/v1/": {
        "identitytoken": "tok"}}}  # fmt: skip
    found = creds.from_auth_config(json.dumps(doc), "secret REG")
    assert found == {
        "reg.example:5000": Credentials("ci", "pw"),
        "docker.io": Credentials(identity_token="tok"),
    }


@pytest.mark.parametrize(
    "text",
    [
        "ci:hunter2",
        json.dumps({"auths": {}, "credsStore": "hunter2"}),
        json.dumps({"auths": {"h": {"auth": "hunter2!"}}}),
        json.dumps({"auths": ["hunter2"]}),
    ],
)
def test_from_auth_config_refuses_other_documents_without_quoting_them(text):
    with pytest.raises(AuthError) as err:
        creds.from_auth_config(text, "secret REG")
    assert str(err.value).startswith("secret REG")
    assert "hunter2" not in str(err.value)


def test_a_credential_scope_never_reads_the_hosts_auth_files(tmp_path, monkeypatch):
    import contextvars
    import threading

    from dockyard.registry.client import CredentialScope, client_for

    auth_file = tmp_path / "auth.json"
    pair = base64.b64encode(b"host-user:host-pw").decode()
    auth_file.write_text(json.dumps({"auths": {"a.example": {"auth": pair}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    assert client_for("a.example").auth.credentials == Credentials("host-user", "host-pw")

    run = CredentialScope({"b.example": Credentials("ci", "pw")}, host_credentials=False)
    with run.active():
        assert client_for("a.example").auth.credentials == Credentials()  # anonymous
        assert client_for("b.example").auth.credentials == Credentials("ci", "pw")
        seen = []
        context = contextvars.copy_context()  # as the builder's stage threads run
        thread = threading.Thread(
            target=context.run, args=(lambda: seen.append(client_for("a.example")),)
        )
        thread.start()
        thread.join()
        assert seen[0].auth.credentials == Credentials()
    run.close()
    allowed = CredentialScope({}, host_credentials=True)
    with allowed.active():
        assert client_for("a.example").auth.credentials == Credentials("host-user", "host-pw")
    assert client_for("a.example").auth.credentials == Credentials("host-user", "host-pw")
