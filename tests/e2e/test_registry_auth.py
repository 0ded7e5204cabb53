"""Authentication against real registries: htpasswd (basic) and token auth.

The token service is ours (a thread on 127.0.0.1 issuing RS256 JWTs with an ``x5c``
chain, as distribution's ``auth.token`` verifies them); the registry is the real one.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from dockyard.errors import AuthError
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.home import RawManifest
from dockyard.reference import parse
from dockyard.registry.client import (
    Credentials,
    RegistryClient,
    RegistryDestination,
    RegistrySource,
    login,
    logout,
)
from tests.conftest import Registry, need, start_docker_registry, stop, wait_for_http
from tests.support.http import serve_in_thread
from tests.support.registry_auth import (
    PASSWORD,
    USER,
    auth_env,
    basic,
    basic_registry,
    registry_env,
    write_auths,
)

SHARED_FIXTURES = (auth_env, basic_registry)  # pytest finds them here by name

pytestmark = pytest.mark.e2e

REFRESH_TOKEN = "refresh-0123"


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


def small_image(client: RegistryClient, repo: str, tag: str) -> tuple[bytes, Descriptor]:
    """Push a one-layer image through RegistryDestination; return its manifest bytes."""
    dest = RegistryDestination(client, parse(f"{client.host}/{repo}:{tag}"))
    layer_data = uuid.uuid4().bytes * 100
    config_data = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    layer = Descriptor.of_bytes("application/vnd.oci.image.layer.v1.tar", layer_data)
    config = Descriptor.of_bytes("application/vnd.oci.image.config.v1+json", config_data)
    for desc, data in ((config, config_data), (layer, layer_data)):
        if not dest.has_blob(desc):
            dest.put_blob(desc, io.BytesIO(data))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.to_dict(),
            "layers": [layer.to_dict()],
        }
    ).encode()
    dest.put_manifest(
        RawManifest(manifest, "application/vnd.oci.image.manifest.v1+json"), root=True
    )
    return manifest, layer


# -- basic auth (htpasswd) --------------------------------------------------------------


def test_basic_auth_from_auth_file(basic_registry, auth_env):
    repo = unique("basic")
    anonymous = RegistryClient(basic_registry.host)
    with pytest.raises(AuthError) as err:
        anonymous.get_manifest(repo, "v1")
    assert err.value.status == 401
    assert str(err.value).startswith(f"registry {basic_registry.host}: authentication required")

    write_auths(auth_env, basic_registry.host, auth=basic(USER, PASSWORD))
    client = RegistryClient(basic_registry.host)
    manifest, layer = small_image(client, repo, "v1")
    assert client.get_manifest(repo, "v1").data == manifest
    with client.open_blob(repo, layer) as stream:
        assert len(stream.read()) == layer.size

    wrong = RegistryClient(basic_registry.host, credentials=Credentials(USER, "wrong"))
    with pytest.raises(AuthError) as err:
        wrong.get_manifest(repo, "v1")
    assert err.value.status == 401


def test_login_stores_atomically_and_logout_forgets(basic_registry, auth_env, tmp_path):
    other = {"auth": basic("bob", "x")}
    auth_env.write_text(json.dumps({"auths": {"other.example": other}, "credsStore": ""}))

    with pytest.raises(AuthError):
        login(basic_registry.host, USER, "wrong")
    assert json.loads(auth_env.read_text())["auths"] == {"other.example": other}

    assert login(basic_registry.host, USER, PASSWORD) == auth_env
    assert auth_env.stat().st_mode & 0o777 == 0o600
    doc = json.loads(auth_env.read_text())
    assert doc["auths"] == {
        "other.example": other,
        basic_registry.host: {"auth": basic(USER, PASSWORD)},
    }
    assert [p.name for p in auth_env.parent.iterdir() if p.name.startswith(".")] == []

    # A client that looks credentials up now gets in.
    small_image(RegistryClient(basic_registry.host), unique("login"), "v1")

    assert logout(basic_registry.host) is True
    assert json.loads(auth_env.read_text())["auths"] == {"other.example": other}
    assert logout(basic_registry.host) is False


def test_login_writes_docker_config_when_no_auth_file(basic_registry, auth_env, monkeypatch):
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    written = login(basic_registry.host, USER, PASSWORD)
    assert written == Path.home() / ".docker" / "config.json"
    assert json.loads(written.read_text())["auths"][basic_registry.host] == {
        "auth": basic(USER, PASSWORD)
    }
    assert written.stat().st_mode & 0o777 == 0o600


# -- token auth -------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """A docker token service: ``GET /token?service&scope`` (basic auth optional) and the
    OAuth2 ``POST /token`` refresh-token grant. Alice gets what she asks for; anonymous
    callers get pull only. Keys are rotated by :meth:`rotate` (the registry must be
    restarted to trust the new one)."""

    bundle: Path
    service: str = "dockyard-test-registry"
    issuer: str = "dockyard-test-issuer"
    token_field: str = "token"
    expires_in: int = 300
    requests: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rotate()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if (name, password) != (USER, PASSWORD):
                        return self._answer(401, {"details": "bad credentials"})
                    user = name
                server.requests.append({"method": "GET", "user": user, **query})
                self._grant(user, query.get("scope", []))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                server.requests.append({"method": "POST", **form})
                if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [
                    REFRESH_TOKEN
                ]:
                    return self._answer(401, {"error": "invalid_grant"})
                self._grant(USER, " ".join(form.get("scope", [])).split())

            def _grant(self, user: str | None, scopes: list[str]) -> None:
                token = server.issue(user, scopes)
                self._answer(200, {server.token_field: token, "expires_in": server.expires_in})

            def _answer(self, status: int, doc: dict) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        serve_in_thread(self._httpd)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/token"

    def rotate(self) -> None:
        """A new signing key and self-signed certificate, written as the trust bundle."""
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"token-{uuid.uuid4()}")])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.bundle.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, user: str | None, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = {"pull", "push", "delete", "*"} if user else {"pull"}
            granted = [a for a in actions.split(",") if a in allowed]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        der = self._cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def count(self, **match: object) -> int:
        return sum(1 for r in self.requests if all(r.get(k) == v for k, v in match.items()))

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@dataclass
class TokenRegistry:
    registry: Registry
    tokens: TokenServer
    workdir: Path

    @property
    def host(self) -> str:
        return self.registry.host

    def restart(self) -> None:
        """Restart the registry on the same port (it re-reads the trust bundle)."""
        stop(self.registry)
        with open(self.workdir / "registry-restarted.log", "ab") as log, registry_env():
            self.registry.process = subprocess.Popen(
                ["docker-registry", "serve", str(self.workdir / "config.yml")],
                stdout=log,
                stderr=log,
            )
        wait_for_http(f"{self.registry.url}/v2/", process=self.registry.process)


@pytest.fixture
def token_registry(tmp_path) -> Iterator[TokenRegistry]:
    tokens = TokenServer(tmp_path / "token-ca.pem")
    auth_yaml = (
        "auth:\n"
        "  token:\n"
        f"    realm: {tokens.realm}\n"
        f"    service: {tokens.service}\n"
        f"    issuer: {tokens.issuer}\n"
        f"    rootcertbundle: {tokens.bundle}\n"
    )
    with registry_env():
        registry = start_docker_registry(tmp_path, auth_yaml)
    yield TokenRegistry(registry, tokens, tmp_path)
    stop(registry)
    tokens.close()


def test_token_auth_push_and_pull(token_registry, auth_env):
    host = token_registry.host
    tokens = token_registry.tokens
    write_auths(auth_env, host, auth=basic(USER, PASSWORD))
    repo = unique("token")
    client = RegistryClient(host)
    manifest, layer = small_image(client, repo, "v1")

    # One token per scope, cached for every request that needs it.
    assert tokens.count(user=USER) == 2
    scopes = {s for r in tokens.requests for s in r["scope"]}
    assert scopes == {f"repository:{repo}:pull", f"repository:{repo}:pull,push"}
    assert all(r["service"] == [tokens.service] for r in tokens.requests)

    # skopeo, authenticating with the same token service, sees our bytes.
    need("skopeo")
    raw = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"--creds={USER}:{PASSWORD}",
            f"docker://{host}/{repo}:v1",
        ],
        check=True,
        capture_output=True,
    ).stdout
    assert raw == manifest

    # Anonymous callers may pull (the service grants them pull, as access_token)...
    tokens.token_field = "access_token"
    anonymous = RegistryClient(host, credentials=Credentials())
    source = RegistrySource(anonymous, parse(f"{host}/{repo}:v1"))
    assert source.root_manifest().data == manifest
    with source.open_blob(layer) as stream:
        assert len(stream.read()) == layer.size
    assert tokens.count(user=None) == 1

    # A token is reused until its expires_in runs out (here: at once).
    tokens.expires_in = 1
    anonymous = RegistryClient(host, credentials=Credentials())
    anonymous.get_manifest(repo, "v1")
    anonymous.get_manifest(repo, "v1")
    assert tokens.count(user=None) == 3

    # ...but not push: the registry refuses the pull-only token.
    with pytest.raises(AuthError) as err:
        small_image(anonymous, repo, "v2")
    assert err.value.status == 401
    assert f"registry {host}:" in str(err.value)


def test_identity_token_uses_oauth2_refresh_grant(token_registry, auth_env):
    host = token_registry.host
    write_auths(auth_env, host, auth=basic(USER, ""), identitytoken=REFRESH_TOKEN)
    repo = unique("oauth")
    client = RegistryClient(host)
    manifest, _ = small_image(client, repo, "v1")
    assert client.get_manifest(repo, "v1").data == manifest
    posts = [r for r in token_registry.tokens.requests if r["method"] == "POST"]
    assert posts and all(r["grant_type"] == ["refresh_token"] for r in posts)
    assert token_registry.tokens.count(method="GET") == 0


def test_expired_token_mid_upload_is_refreshed(token_registry, auth_env):
    """The registry stops trusting our cached token between the upload's POST and its
    PUT (key rotation + restart); the client fetches a new token and starts over."""
    host = token_registry.host
    tokens = token_registry.tokens
    client = RegistryClient(host, credentials=Credentials(USER, PASSWORD))
    repo = unique("refresh")
    small_image(client, repo, "v1")
    fetched_before = tokens.count(user=USER)

    data = uuid.uuid4().bytes * 20_000
    desc = Descriptor.of_bytes("application/octet-stream", data)
    opened = []

    def open_stream() -> io.BytesIO:
        if not opened:  # the session is open: now invalidate every token we hold
            tokens.rotate()
            token_registry.restart()
        opened.append(1)
        return io.BytesIO(data)

    assert client.upload_blob(repo, desc, open_stream) is False
    assert len(opened) == 2
    assert tokens.count(user=USER) == fetched_before + 1
    with client.open_blob(repo, desc) as stream:
        assert stream.read() == data

    # The pull token cached before the rotation is refreshed on its first 401 as well.
    assert client.get_manifest(repo, "v1").digest
    assert tokens.count(user=USER) == fetched_before + 2


def test_login_against_token_service(token_registry, auth_env):
    with pytest.raises(AuthError, match=f"registry {token_registry.host}:"):
        login(token_registry.host, USER, "wrong")
    assert not auth_env.exists()
    login(token_registry.host, USER, PASSWORD)
    assert json.loads(auth_env.read_text())["auths"][token_registry.host] == {
        "auth": basic(USER, PASSWORD)
    }
    logins = [r for r in token_registry.tokens.requests if r["user"] == USER]
    assert logins[-1].get("offline_token") == ["true"] and "scope" not in logins[-1]
