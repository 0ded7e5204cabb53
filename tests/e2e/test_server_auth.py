"""Auth (htpasswd basic, our own bearer-token realm), TLS and read-only mode, with
skopeo, podman and dockyard's client as the clients."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys

import httpx
import pytest

from tests.conftest import need
from tests.support.registry_server import Containers, run, skopeo, start_server

pytestmark = pytest.mark.e2e

USER, PASSWORD = "alice", "s3cret"


@pytest.fixture(scope="module")
def htpasswd(tmp_path_factory):
    need("htpasswd")
    path = tmp_path_factory.mktemp("auth") / "htpasswd"
    run("htpasswd", "-B", "-b", "-c", str(path), USER, PASSWORD)
    return path


def push(layout, host: str, name: str, *creds: str, check: bool = True):
    return skopeo(
        "copy",
        "-q",
        "--dest-tls-verify=false",
        *creds,
        f"oci:{layout}:latest",
        f"docker://{host}/{name}",
        check=check,
    )


def dockyard(root, auth_file, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKYARD_ROOT": str(root), "REGISTRY_AUTH_FILE": str(auth_file)}
    return subprocess.run(
        [sys.executable, "-m", "dockyard.cli.main", *args], capture_output=True, text=True, env=env
    )


def write_auth(path, host: str) -> None:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_clients_authenticate(mode, htpasswd, tmp_path, busybox_layout):
    server = start_server(tmp_path / "server", "--htpasswd", str(htpasswd), "--auth", mode)
    try:
        r = httpx.get(f"{server.url}/v2/")
        assert r.status_code == 401
        assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
        challenge = r.headers["www-authenticate"]
        assert challenge.startswith("Basic" if mode == "basic" else "Bearer realm=")

        failed = push(busybox_layout, server.host, "auth/app:1", check=False)
        assert failed.returncode != 0
        failed = push(
            busybox_layout, server.host, "auth/app:1", "--dest-creds", f"{USER}:wrong", check=False
        )
        assert failed.returncode != 0
        push(busybox_layout, server.host, "auth/app:1", "--dest-creds", f"{USER}:{PASSWORD}")
        skopeo(
            "inspect",
            "--tls-verify=false",
            "--creds",
            f"{USER}:{PASSWORD}",
            f"docker://{server.host}/auth/app:1",
        )

        podman = Containers("podman")
        try:
            podman(
                "pull",
                "--tls-verify=false",
                "--creds",
                f"{USER}:{PASSWORD}",
                f"{server.host}/auth/app:1",
            )
            podman(
                "push",
                "--tls-verify=false",
                "--creds",
                f"{USER}:{PASSWORD}",
                f"{server.host}/auth/app:1",
                f"{server.host}/auth/podman:1",
            )
        finally:
            podman.close()

        auth_file = tmp_path / "auth.json"
        write_auth(auth_file, server.host)
        store = tmp_path / "store"
        got = dockyard(store, auth_file, "pull", "--progress=quiet", f"{server.host}/auth/podman:1")
        assert got.returncode == 0, got.stderr
        got = dockyard(
            store,
            auth_file,
            "tag",
            f"{server.host}/auth/podman:1",
            f"{server.host}/auth/dockyard:1",
        )
        got = dockyard(
            store, auth_file, "push", "--progress=quiet", f"{server.host}/auth/dockyard:1"
        )
        assert got.returncode == 0, got.stderr
        listing = httpx.get(f"{server.url}/v2/_catalog", auth=(USER, PASSWORD))
        if mode == "basic":
            assert {"auth/app", "auth/podman", "auth/dockyard"} <= set(
                listing.json()["repositories"]
            )
    finally:
        server.stop()


def test_token_realm_flow(htpasswd, tmp_path):
    server = start_server(tmp_path / "server", "--htpasswd", str(htpasswd), "--auth", "token")
    try:
        r = httpx.get(f"{server.url}/v2/some/repo/tags/list")
        assert r.status_code == 401
        challenge = r.headers["www-authenticate"]
        assert f'realm="{server.url}/token"' in challenge
        assert 'scope="repository:some/repo:pull"' in challenge
        bad = httpx.get(
            f"{server.url}/token",
            params={"scope": "repository:some/repo:pull"},
            auth=(USER, "nope"),
        )
        assert bad.status_code == 401
        ok = httpx.get(
            f"{server.url}/token",
            params={"service": "dockyard-registry", "scope": "repository:some/repo:pull"},
            auth=(USER, PASSWORD),
        )
        token = ok.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx.get(f"{server.url}/v2/some/repo/tags/list", headers=headers)
        assert r.status_code == 404  # allowed; the repository just does not exist
        r = httpx.post(f"{server.url}/v2/some/repo/blobs/uploads/", headers=headers)
        assert r.status_code == 401  # pull-only token
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
        r = httpx.get(f"{server.url}/v2/other/repo/tags/list", headers=headers)
        assert r.status_code == 401  # other repository
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        r = httpx.get(
            f"{server.url}/v2/some/repo/tags/list", headers={"Authorization": f"Bearer {forged}"}
        )
        assert r.status_code == 401
        # the OAuth2 password grant (docker login with identity tokens uses POST)
        r = httpx.post(
            f"{server.url}/token",
            data={
                "grant_type": "password",
                "username": USER,
                "password": PASSWORD,
                "scope": "repository:some/repo:pull,push",
            },
        )
        assert r.status_code == 200 and r.json()["access_token"]
    finally:
        server.stop()


def test_anonymous_pull(htpasswd, tmp_path, busybox_layout):
    server = start_server(
        tmp_path / "server", "--htpasswd", str(htpasswd), "--auth", "token", "--anonymous-pull"
    )
    try:
        push(busybox_layout, server.host, "anon/app:1", "--dest-creds", f"{USER}:{PASSWORD}")
        skopeo("inspect", "--tls-verify=false", f"docker://{server.host}/anon/app:1")
        assert push(busybox_layout, server.host, "anon/app:2", check=False).returncode != 0
    finally:
        server.stop()


def test_tls(tmp_path, busybox_layout, monkeypatch):
    need("openssl")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        str(key),
        "-out",
        str(cert),
    )
    server = start_server(
        tmp_path / "server", "--tls-cert", str(cert), "--tls-key", str(key), tls=True
    )
    try:
        context = ssl.create_default_context(cafile=str(cert))
        assert httpx.get(f"{server.url}/v2/", verify=context).status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{server.host}/v2/", timeout=2).raise_for_status()
        certs = tmp_path / "certs"
        certs.mkdir()
        (certs / "ca.crt").write_bytes(cert.read_bytes())
        skopeo(
            "copy",
            "-q",
            "--dest-cert-dir",
            str(certs),
            f"oci:{busybox_layout}:latest",
            f"docker://{server.host}/tls/app:1",
        )
        skopeo("inspect", "--cert-dir", str(certs), f"docker://{server.host}/tls/app:1")

        # Our client verifies too, trusting what SSL_CERT_FILE names (read at the first
        # handshake, not when the client is made), and refuses the unknown certificate.
        from dockyard.errors import RegistryError
        from dockyard.registry.client import RegistryClient, RetryPolicy

        with RegistryClient(server.host, tls_verify=True, retry=RetryPolicy(attempts=1)) as c:
            monkeypatch.setenv("SSL_CERT_FILE", str(cert))
            assert c.list_tags("tls/app") == ["1"]
        monkeypatch.delenv("SSL_CERT_FILE")
        with (
            RegistryClient(server.host, tls_verify=True, retry=RetryPolicy(attempts=1)) as c,
            pytest.raises(RegistryError, match=r"(?i)certificate"),
        ):
            c.list_tags("tls/app")
    finally:
        server.stop()


def test_read_only(tmp_path, busybox_layout):
    server = start_server(tmp_path / "server")
    push(busybox_layout, server.host, "ro/app:1")
    server.stop()
    server.args = ("--read-only",)
    server.start()
    try:
        skopeo("inspect", "--tls-verify=false", f"docker://{server.host}/ro/app:1")
        assert push(busybox_layout, server.host, "ro/app:2", check=False).returncode != 0
        r = httpx.delete(f"{server.url}/v2/ro/app/manifests/1")
        assert r.status_code == 405
    finally:
        server.stop()
