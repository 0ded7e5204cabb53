"""Attacks on the registry server's front door (issue 10): unbounded request bodies,
bcrypt on the event loop, password guessing, blob reads around token scopes, a broken
htpasswd reload, and the token key's file mode.

Servers run in process (Starlette's TestClient) where the attack is about answers, and
as ``dockyard registry serve`` subprocesses where it is about memory or latency.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import statistics
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import httpx
import pytest

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from dockyard.oci import mediatypes as mt
from dockyard.registry.server import auth
from dockyard.registry.server.app import create_app
from dockyard.registry.server.config import ServerConfig, make_upstream
from tests.support.registry_server import sha256_of as sha
from tests.support.registry_server import start_server

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "mallory": "mallory-pw"}


def write_htpasswd(path: Path, users: dict[str, str], rounds: int = 4) -> Path:
    lines = [
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds)).decode()}"
        for u, p in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def basic(user: str, password: str | None = None) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password or PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def error_code(r: httpx.Response) -> str:
    return r.json()["errors"][0]["code"]


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# -- request bodies -------------------------------------------------------------------


def send_huge_body(port: int, request_line: str, total: int, chunked: bool) -> tuple[bytes, int]:
    """Send ``total`` bytes of body (declared, or chunked) while reading the answer; the
    answer and how many bytes the server took before it hung up."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        f"{request_line} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    )
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {total}\r\n\r\n"
    sock.sendall(head.encode())
    chunk = b"a=" + b"b" * ((1 << 20) - 2)
    piece = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
    sent = [0]

    def pour() -> None:
        try:
            while sent[0] < total:
                sock.sendall(piece)
                sent[0] += len(chunk)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server hung up: what we want

    sender = threading.Thread(target=pour, daemon=True)
    sender.start()
    sock.settimeout(60)
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sender.join(60)
        sock.close()
    return answer, sent[0]


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bodies")
    htpasswd = write_htpasswd(tmp / "htpasswd", {"alice": PASSWORDS["alice"]})
    server = start_server(tmp / "server", "--htpasswd", str(htpasswd), "--auth", "token")
    yield server
    server.stop()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_token_form_of_200mb_is_refused_without_buffering_it(token_server, chunked):
    before = peak_rss_kib(token_server.process.pid)
    answer, sent = send_huge_body(token_server.port, "POST /token", 200 << 20, chunked)
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line, answer[:300]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["errors"][0]["code"] == "PAYLOAD_TOO_LARGE"
    grown = peak_rss_kib(token_server.process.pid) - before
    assert grown < 32 << 10, f"server peak RSS grew {grown >> 10} MiB"
    assert sent < 64 << 20, f"the server read {sent >> 20} MiB of a refused body"
    assert httpx.get(f"{token_server.url}/v2/").status_code == 401  # still serving


@pytest.mark.parametrize(
    "request_line", ["PUT /v2/a/b/manifests/x", "POST /v2/a/b/blobs/uploads/?digest=sha256:00"]
)
def test_refused_request_does_not_read_its_body(token_server, request_line):
    """Unauthenticated 200 MB bodies: 401, and the server hangs up instead of reading
    (and dropping) the rest to keep the connection alive."""
    answer, sent = send_huge_body(token_server.port, request_line, 200 << 20, chunked=False)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
    assert sent < 64 << 20, f"the server read {sent >> 20} MiB of a refused body"


def test_manifest_body_over_cap_is_refused(tmp_path):
    with TestClient(create_app(ServerConfig(tmp_path / "root"))) as client:

        def endless():
            for _ in range(8):  # 8 MiB, chunked: no Content-Length to refuse it by
                yield b" " * (1 << 20)

        r = client.put("/v2/a/b/manifests/latest", content=endless())
        assert r.status_code == 413 and error_code(r) == "PAYLOAD_TOO_LARGE"


# -- bcrypt and password guessing -------------------------------------------------------


def test_wrong_passwords_do_not_stall_other_requests(tmp_path):
    """A flood of wrong passwords (rate limit out of the way) while a logged-in user
    pulls: their requests answer about as fast as without the flood."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": PASSWORDS["alice"]}, rounds=10)
    config = tmp_path / "registry.toml"
    config.write_text("[auth]\nfailure_limit = 1000000\n")
    server = start_server(tmp_path / "server", "--htpasswd", str(htpasswd), "--config", str(config))
    good = basic("alice")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:

            def latency() -> float:
                start = time.perf_counter()
                assert client.get("/v2/", headers=good).status_code == 200
                return time.perf_counter() - start

            for _ in range(3):
                latency()  # warm up; alice's password is remembered from now on
            quiet = statistics.median(latency() for _ in range(30))
            stop, flooding = threading.Event(), threading.Event()
            refused = []

            def attack() -> None:
                with httpx.Client(base_url=server.url, timeout=60) as c:
                    while not stop.is_set():
                        r = c.get("/v2/", headers=basic("alice", "guess"))
                        refused.append(r.status_code)
                        flooding.set()

            attackers = [threading.Thread(target=attack) for _ in range(4)]
            for t in attackers:
                t.start()
            try:
                assert flooding.wait(60)  # the flood is under way
                before = len(refused)
                samples: list[float] = []
                while len(samples) < 30 or len(refused) - before < 8:  # 8 bcrypts at least
                    samples.append(latency())
                attacked = statistics.median(samples)
            finally:
                stop.set()
                for t in attackers:
                    t.join()
        assert set(refused) == {401}
        assert attacked < 5 * quiet + 0.05, f"median {attacked:.3f}s under attack, {quiet:.3f}s"
    finally:
        server.stop()


def in_process(tmp_path: Path, **config) -> tuple:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", PASSWORDS)
    app = create_app(ServerConfig(tmp_path / "root", htpasswd=htpasswd, **config))

    def client(address: str) -> TestClient:
        return TestClient(app, client=(address, 40000))

    return app, client


def test_failed_logins_are_limited_per_client(tmp_path):
    app, client = in_process(tmp_path, auth_failure_limit=3)
    bcrypt_runs = []
    check = app.htpasswd.check
    app.htpasswd.check = lambda *a: bcrypt_runs.append(a) or check(*a)
    try:
        attacker = client("10.0.0.66")
        for _ in range(3):
            assert attacker.get("/v2/", headers=basic("alice", "guess")).status_code == 401
        throttled = attacker.get("/v2/", headers=basic("alice", "guess"))
        assert throttled.status_code == 429 and error_code(throttled) == "TOOMANYREQUESTS"
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        # no bcrypt for a throttled client, whatever it sends
        runs = len(bcrypt_runs)
        assert attacker.get("/v2/", headers=basic("bob")).status_code == 429
        assert len(bcrypt_runs) == runs
        # other clients are not affected
        assert client("10.0.0.7").get("/v2/", headers=basic("bob")).status_code == 200
    finally:
        app.close()


def test_failed_logins_are_limited_per_user(tmp_path):
    """Guesses at bob's and alice's passwords from many addresses: their buckets empty,
    so bob (not logged in) waits even with the right password; alice's login, checked
    before the attack, is remembered and keeps working; mallory is untouched."""
    app, client = in_process(tmp_path, auth_failure_limit=3)
    try:
        alices_laptop = client("10.0.1.1")
        assert alices_laptop.get("/v2/", headers=basic("alice")).status_code == 200
        for user in ("bob", "alice"):
            statuses = [
                client(f"10.0.2.{i}").get("/v2/", headers=basic(user, f"guess{i}")).status_code
                for i in range(6)
            ]
            assert statuses[:3] == [401] * 3 and set(statuses[3:]) == {429}
        fresh = client("10.0.3.1")
        assert fresh.get("/v2/", headers=basic("bob")).status_code == 429
        assert fresh.get("/v2/", headers=basic("mallory")).status_code == 200
        assert alices_laptop.get("/v2/", headers=basic("alice")).status_code == 200
    finally:
        app.close()


def test_parallel_logins_share_one_check(tmp_path):
    """A client opening many connections at once with a password not checked yet: one
    bcrypt run, no failure budget spent, every request answered."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd", PASSWORDS, rounds=8)
    app = create_app(ServerConfig(tmp_path / "root", htpasswd=htpasswd, auth_failure_limit=2))
    bcrypt_runs = []
    check = app.htpasswd.check
    app.htpasswd.check = lambda *a: bcrypt_runs.append(a) or check(*a)
    with TestClient(app, client=("10.0.0.5", 40000)) as client, ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: client.get("/v2/", headers=basic("bob")), range(16)))
    assert [r.status_code for r in statuses] == [200] * 16
    assert len(bcrypt_runs) == 1


def test_token_realm_is_rate_limited_too(tmp_path):
    app, client = in_process(tmp_path, auth_mode="token", auth_failure_limit=2)
    try:
        attacker = client("10.0.0.66")
        form = {"grant_type": "password", "username": "alice", "password": "guess"}
        assert [attacker.post("/token", data=form).status_code for _ in range(3)] == [
            401,
            401,
            429,
        ]
        assert attacker.get("/token", headers=basic("alice", "guess")).status_code == 429
    finally:
        app.close()


# -- token scopes and blob reads ---------------------------------------------------------


def token(client: TestClient, user: str, *scopes: str) -> dict[str, str]:
    r = client.get("/token", params=[("scope", s) for s in scopes], headers=basic(user))
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def push_blob(client: TestClient, name: str, data: bytes, headers: dict[str, str]) -> str:
    digest = sha(data)
    r = client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", content=data, headers=headers)
    assert r.status_code == 201, r.text
    return digest


@pytest.fixture
def scoped(tmp_path):
    """A token-mode registry where alice keeps a secret blob in team/secret and mallory
    holds a token for mallory/x only."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd", PASSWORDS)
    config = ServerConfig(tmp_path / "root", htpasswd=htpasswd, auth_mode="token")
    with TestClient(create_app(config)) as client:
        alice = token(client, "alice", "repository:team/secret:pull,push")
        secret = push_blob(client, "team/secret", b"the secret layer", alice)
        mallory = token(client, "mallory", "repository:mallory/x:pull,push")
        yield client, secret, mallory


def readable(client: TestClient, name: str, digest: str, headers) -> bool:
    return client.get(f"/v2/{name}/blobs/{digest}", headers=headers).status_code == 200


def test_mount_without_from_does_not_hand_out_a_blob(scoped):
    client, secret, mallory = scoped
    r = client.post(f"/v2/mallory/x/blobs/uploads/?mount={secret}", headers=mallory)
    assert r.status_code == 202  # a plain upload session, as the spec allows
    assert not readable(client, "mallory/x", secret, mallory)


def test_mount_from_a_repository_the_token_cannot_read_is_refused(scoped):
    client, secret, mallory = scoped
    r = client.post(
        f"/v2/mallory/x/blobs/uploads/?mount={secret}&from=team/secret", headers=mallory
    )
    assert r.status_code == 202
    assert not readable(client, "mallory/x", secret, mallory)
    both = token(client, "alice", "repository:mallory/x:pull,push", "repository:team/secret:pull")
    r = client.post(f"/v2/mallory/x/blobs/uploads/?mount={secret}&from=team/secret", headers=both)
    assert r.status_code == 201  # with pull on the source the mount works
    assert readable(client, "mallory/x", secret, mallory)


def test_manifest_naming_another_repositorys_blob_is_refused(scoped):
    client, secret, mallory = scoped
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {
            "mediaType": mt.OCI_CONFIG,
            "digest": push_blob(client, "mallory/x", config, mallory),
            "size": len(config),
        },
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": secret, "size": 16}],
    }
    r = client.put(
        "/v2/mallory/x/manifests/steal",
        content=json.dumps(doc).encode(),
        headers={**mallory, "Content-Type": mt.OCI_MANIFEST},
    )
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert not readable(client, "mallory/x", secret, mallory)


def test_index_naming_another_repositorys_blob_is_refused(scoped):
    client, secret, mallory = scoped
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": secret, "size": 16}],
    }
    r = client.put(
        "/v2/mallory/x/manifests/steal",
        content=json.dumps(doc).encode(),
        headers={**mallory, "Content-Type": mt.OCI_INDEX},
    )
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    got = client.get(f"/v2/mallory/x/manifests/{secret}", headers=mallory)
    assert got.status_code == 404 and b"secret" not in got.content


@pytest.fixture
def mirrored(tmp_path):
    """Our registry mirrors an (empty but for one blob) upstream under up/; alice keeps a
    secret blob in team/secret, and the upstream has a public blob in lib/base."""
    upstream = start_server(tmp_path / "upstream")
    public = b"a public layer"
    with httpx.Client(base_url=upstream.url) as c:
        r = c.post(f"/v2/lib/base/blobs/uploads/?digest={sha(public)}", content=public)
        assert r.status_code == 201
    htpasswd = write_htpasswd(tmp_path / "htpasswd", PASSWORDS)
    config = ServerConfig(
        tmp_path / "root",
        htpasswd=htpasswd,
        auth_mode="token",
        upstreams=(make_upstream("up", upstream.url, "test"),),
    )
    try:
        with TestClient(create_app(config)) as client:
            alice = token(client, "alice", "repository:team/secret:pull,push")
            secret = push_blob(client, "team/secret", b"the secret layer", alice)
            push_blob(client, "team/secret", public, alice)  # also stored here already
            yield client, upstream, secret, sha(public)
    finally:
        upstream.stop()


def test_mirror_namespace_does_not_hand_out_a_stored_blob(mirrored):
    client, _, secret, public = mirrored
    mallory = token(client, "mallory", "repository:up/lib/base:pull")
    r = client.get(f"/v2/up/lib/base/blobs/{secret}", headers=mallory)
    assert r.status_code == 404 and b"secret" not in r.content
    assert client.head(f"/v2/up/lib/base/blobs/{secret}", headers=mallory).status_code == 404
    # a blob the upstream has for that repository is served (from what we stored)
    assert client.get(f"/v2/up/lib/base/blobs/{public}", headers=mallory).content == (
        b"a public layer"
    )


def test_ns_request_does_not_hand_out_a_stored_blob(mirrored):
    client, upstream, secret, _ = mirrored
    mallory = token(client, "mallory", "repository:mallory/x:pull", "repository:up/mallory/x:pull")
    r = client.get(f"/v2/mallory/x/blobs/{secret}?ns={upstream.host}", headers=mallory)
    assert r.status_code == 404 and b"secret" not in r.content


def test_ns_request_is_authorized_for_the_repository_it_reads(mirrored):
    client, upstream, _, public = mirrored
    only_local = token(client, "mallory", "repository:lib/base:pull")
    r = client.get(f"/v2/lib/base/blobs/{public}?ns={upstream.host}", headers=only_local)
    assert r.status_code == 401
    assert 'scope="repository:up/lib/base:pull"' in r.headers["www-authenticate"]
    mirror = token(client, "mallory", "repository:up/lib/base:pull")
    r = client.get(f"/v2/lib/base/blobs/{public}?ns={upstream.host}", headers=mirror)
    assert r.status_code == 200 and r.content == b"a public layer"


# -- htpasswd reloads, the token key ------------------------------------------------------


def test_failed_htpasswd_reload_refuses_everyone(tmp_path, caplog):
    path = write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw", "bob": "bob-pw"})
    with TestClient(create_app(ServerConfig(tmp_path / "root", htpasswd=path))) as client:
        assert client.get("/v2/", headers=basic("bob")).status_code == 200  # remembered now
        good = path.read_text()
        with caplog.at_level(logging.ERROR, logger="dockyard.registry.server"):
            path.write_text(good + "carol:{SHA}not-bcrypt\n")  # malformed
            assert client.get("/v2/", headers=basic("bob")).status_code == 401
            assert client.get("/v2/", headers=basic("alice")).status_code == 401
        assert "htpasswd:3: only bcrypt entries" in caplog.text
        path.unlink()  # missing
        for _ in range(20):  # refused, but never throttled: not the clients' failure
            assert client.get("/v2/", headers=basic("alice")).status_code == 401
        path.write_text(good.splitlines()[0] + "\n")  # valid again, without bob
        assert client.get("/v2/", headers=basic("alice")).status_code == 200
        assert client.get("/v2/", headers=basic("bob")).status_code == 401


def test_removed_users_tokens_stop_working(tmp_path):
    path = write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw", "bob": "bob-pw"})
    config = ServerConfig(tmp_path / "root", htpasswd=path, auth_mode="token")
    with TestClient(create_app(config)) as client:
        bobs = token(client, "bob", "repository:a/b:pull")
        alices = token(client, "alice", "repository:a/b:pull")
        assert client.get("/v2/a/b/tags/list", headers=bobs).status_code == 404  # allowed
        good = path.read_text()
        path.write_text(good.splitlines()[0] + "\n")  # bob removed
        assert client.get("/v2/a/b/tags/list", headers=bobs).status_code == 401
        assert client.get("/v2/a/b/tags/list", headers=alices).status_code == 404
        path.write_text("alice:broken\n")  # every token refused while the file is bad
        assert client.get("/v2/a/b/tags/list", headers=alices).status_code == 401
        path.write_text(good)
        assert client.get("/v2/a/b/tags/list", headers=alices).status_code == 404


def test_token_key_is_never_readable_by_others(tmp_path):
    """A watcher stats the key path while keys are created over and over: it never sees
    the key with group or other permissions."""
    key = tmp_path / "auth" / "token.key"
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen.add(os.stat(key).st_mode & 0o777)

    watcher = threading.Thread(target=watch)
    watcher.start()
    old_umask = os.umask(0o022)
    try:
        for _ in range(300):
            auth.TokenIssuer(key)
            key.unlink()
    finally:
        os.umask(old_umask)
        stop.set()
        watcher.join()
    assert seen == {0o600}


def test_concurrent_servers_agree_on_one_token_key(tmp_path):
    key = tmp_path / "auth" / "token.key"
    issuers: list[auth.TokenIssuer] = []
    threads = [
        threading.Thread(target=lambda: issuers.append(auth.TokenIssuer(key))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    signed, _ = issuers[0].issue("alice", [])
    assert all(i.verify_user(signed) == ("alice", []) for i in issuers)
    assert [p.name for p in key.parent.iterdir()] == ["token.key"]  # no temp left behind
