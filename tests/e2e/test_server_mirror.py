"""The pull-through cache: two real upstream registries (docker-registry), mirrored at
once; containerd's ``?ns=``; a podman ``registries.conf`` mirror; streaming while
caching; offline (stale) serving; a lying upstream."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import need, start_docker_registry, stop
from tests.support.http import serve_in_thread
from tests.support.registry_server import (
    Containers,
    FakeRegistry,
    copy,
    fake_image,
    manifest_digest,
    run,
    sha512_of,
    start_server,
)
from tests.support.registry_server import sha256_of as sha
from tests.support.waiting import PATIENCE

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def cached(root: Path, digest: str) -> bool:
    return (root / "blobs" / "sha256" / digest.split(":")[1]).is_file()


def wait_until(condition, timeout: float = PATIENCE) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def push_big_image(registry_url: str, name: str, size: int, tag: str = "big") -> tuple[str, str]:
    """A one-layer image whose layer is ``size`` random bytes; returns (manifest, layer)."""
    layer = os.urandom(size)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
        }
    ).encode()
    with httpx.Client(base_url=registry_url, timeout=60) as c:
        for blob in (layer, config):
            loc = c.post(f"/v2/{name}/blobs/uploads/").headers["location"]
            sep = "&" if "?" in loc else "?"
            assert c.put(f"{loc}{sep}digest={sha(blob)}", content=blob).status_code == 201
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha(layer),
                        "size": size,
                    }
                ],
            }
        ).encode()
        r = c.put(
            f"/v2/{name}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert r.status_code == 201, r.text
    return sha(manifest), sha(layer)


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory, busybox_layout):
    """Two docker-registries, each holding busybox under its own name."""
    one = start_docker_registry(tmp_path_factory.mktemp("up1"))
    two = start_docker_registry(tmp_path_factory.mktemp("up2"))
    copy(f"oci:{busybox_layout}:latest", f"docker://{one.host}/org/one:1")
    copy(f"oci:{busybox_layout}:latest", f"docker://{two.host}/team/two:2", "--format", "v2s2")
    yield one, two
    stop(one)
    stop(two)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, upstreams):
    one, two = upstreams
    server = start_server(
        tmp_path_factory.mktemp("mirror"),
        "--upstream",
        f"up1=http://{one.host}",
        "--upstream",
        f"up2=http://{two.host}",
        "--tag-ttl",
        "0",
    )
    yield server
    server.stop()


def test_two_upstreams_at_once(mirror, upstreams, tmp_path):
    one, two = upstreams
    jobs = [
        (f"docker://{mirror.host}/up1/org/one:1", f"oci:{tmp_path}/a:one"),
        (f"docker://{mirror.host}/up2/team/two:2", f"oci:{tmp_path}/b:two"),
    ]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda job: copy(*job), jobs))
    assert manifest_digest(mirror.url, "up1/org/one", "1") == manifest_digest(
        one.url, "org/one", "1"
    )
    assert manifest_digest(mirror.url, "up2/team/two", "2") == manifest_digest(
        two.url, "team/two", "2"
    )
    index = json.loads((tmp_path / "b" / "index.json").read_text())
    raw = (tmp_path / "b" / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_bytes()
    for layer in json.loads(raw)["layers"]:
        assert cached(mirror.root, layer["digest"])
    assert (mirror.root / "repos/up2/team/two/_upstream").read_text() == f"{two.host}/team/two"
    # both are now in our catalog, as ordinary repositories
    repos = httpx.get(f"{mirror.url}/v2/_catalog").json()["repositories"]
    assert {"up1/org/one", "up2/team/two"} <= set(repos)
    assert httpx.get(f"{mirror.url}/v2/up1/org/one/tags/list").json()["tags"] == ["1"]


def test_containerd_ns_protocol(mirror, upstreams):
    one, _ = upstreams
    expected = manifest_digest(one.url, "org/one", "1")
    r = httpx.get(
        f"{mirror.url}/v2/org/one/manifests/1?ns={one.host}", headers={"Accept": OCI_MANIFEST}
    )
    assert r.status_code == 200
    assert r.headers["docker-content-digest"] == expected
    config = json.loads(r.content)["config"]["digest"]
    blob = httpx.get(f"{mirror.url}/v2/org/one/blobs/{config}?ns={one.host}")
    assert blob.status_code == 200 and sha(blob.content) == config
    # a host no upstream serves: just a local repository name (unknown here)
    r = httpx.get(f"{mirror.url}/v2/org/one/manifests/1?ns=elsewhere.example")
    assert r.status_code == 404


def test_podman_pulls_through_registries_conf_mirror(mirror, upstreams, tmp_path):
    conf = tmp_path / "registries.conf"
    conf.write_text(
        "unqualified-search-registries = []\n"
        '[[registry]]\nprefix = "fake.io"\n'
        f'location = "{mirror.host}/up1"\ninsecure = true\n'
    )
    podman = Containers("podman", conf)
    try:
        podman("pull", "fake.io/org/one:1")
        images = podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        assert "fake.io/org/one:1" in images
    finally:
        podman.close()


def test_mirrored_repositories_are_read_only_but_others_take_pushes(mirror, busybox_layout):
    r = httpx.post(f"{mirror.url}/v2/up1/org/one/blobs/uploads/")
    assert r.status_code == 405
    assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
    copy(f"oci:{busybox_layout}:latest", f"docker://{mirror.host}/local/app:1")
    assert manifest_digest(mirror.url, "local/app", "1")


def test_tag_moves_upstream(mirror, upstreams):
    one, _ = upstreams
    first, _ = push_big_image(one.url, "org/moving", 1000, tag="t")
    assert manifest_digest(mirror.url, "up1/org/moving", "t") == first
    second, _ = push_big_image(one.url, "org/moving", 2000, tag="t")
    assert manifest_digest(mirror.url, "up1/org/moving", "t") == second  # TTL 0: re-checked
    assert manifest_digest(mirror.url, "up1/org/moving", first) == first  # digests stay


def test_first_pull_streams_while_caching(mirror, upstreams):
    """The client gets bytes before the blob is complete in the cache; the blob appears
    once it is whole; a client that leaves early still leaves a full cache entry."""
    one, _ = upstreams
    _, layer = push_big_image(one.url, "org/stream", 48 << 20)
    url = f"{mirror.url}/v2/up1/org/stream/blobs/{layer}"
    with httpx.stream("GET", url, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(48 << 20)
        chunks = r.iter_bytes()
        first = next(chunks)
        assert first
        assert not cached(mirror.root, layer)  # still streaming: not in the cache yet
        h = hashlib.sha256(first)
        for chunk in chunks:
            h.update(chunk)
    assert "sha256:" + h.hexdigest() == layer
    assert wait_until(lambda: cached(mirror.root, layer))
    assert list((mirror.root / "tmp").iterdir()) == []

    _, other = push_big_image(one.url, "org/leaver", 32 << 20)
    with httpx.stream("GET", f"{mirror.url}/v2/up1/org/leaver/blobs/{other}") as r:
        next(r.iter_bytes())
    assert wait_until(lambda: cached(mirror.root, other))
    blob = (mirror.root / "blobs" / "sha256" / other[7:]).read_bytes()
    assert sha(blob) == other


def test_offline_upstream_serves_stale(tmp_path, busybox_layout):
    upstream = start_docker_registry(tmp_path / "upstream")
    copy(f"oci:{busybox_layout}:latest", f"docker://{upstream.host}/org/app:1")
    server = start_server(
        tmp_path / "mirror", "--upstream", f"up=http://{upstream.host}", "--tag-ttl", "0"
    )
    try:
        copy(f"docker://{server.host}/up/org/app:1", f"oci:{tmp_path}/first:1")
        digest = manifest_digest(server.url, "up/org/app", "1")
        stop(upstream)
        # offline: the whole pull still works from the cache
        copy(f"docker://{server.host}/up/org/app:1", f"oci:{tmp_path}/offline:1")
        r = httpx.get(f"{server.url}/v2/up/org/app/manifests/1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200
        assert r.headers["docker-content-digest"] == digest
        assert r.headers["x-dockyard-stale"] == "true"
        assert r.headers["warning"] == '110 - "Response is Stale"'
        r = httpx.get(f"{server.url}/v2/up/org/app/manifests/{digest}")
        assert r.status_code == 200 and "x-dockyard-stale" not in r.headers
        assert "serving cached up/org/app:1 (stale)" in server.logs()
        # what was never cached cannot be served
        r = httpx.get(f"{server.url}/v2/up/org/other/manifests/1")
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert httpx.get(f"{server.url}/v2/up/org/app/tags/list").json()["tags"] == ["1"]
    finally:
        server.stop()
        stop(upstream)


WANTED = b"what we want" * 100000


class _FakeUpstream(BaseHTTPRequestHandler):
    """Serves one blob for any digest: the right bytes or wrong ones, with a length or
    chunked (which takes the mirror's general-client path)."""

    protocol_version = "HTTP/1.1"
    body = WANTED
    chunked = False

    def do_HEAD(self):
        self._answer(send_body=False)

    def do_GET(self):
        self._answer(send_body=True)

    def _answer(self, send_body: bool):
        if self.path == "/v2/":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if self.chunked and send_body:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(self.body), 65536):
                part = self.body[i : i + 65536]
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if send_body:
            self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("chunked", [False, True], ids=["lean-fetch", "general-client"])
@pytest.mark.parametrize("honest", [True, False], ids=["right-bytes", "wrong-bytes"])
def test_fake_upstream(tmp_path, honest, chunked):
    handler = type(
        "Handler",
        (_FakeUpstream,),
        {
            "chunked": chunked,
            "body": WANTED if honest else WANTED.replace(b"want", b"WANT"),
        },
    )
    fake = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serve_in_thread(fake)
    server = start_server(
        tmp_path / "mirror", "--upstream", f"fake=http://127.0.0.1:{fake.server_address[1]}"
    )
    try:
        digest = sha(WANTED)
        got = bytearray()
        try:
            with httpx.stream("GET", f"{server.url}/v2/fake/x/blobs/{digest}") as r:
                for chunk in r.iter_bytes():
                    got += chunk
            if r.status_code == 502:  # the lie was found before the answer started
                assert not honest
                assert json.loads(got)["errors"][0]["code"] == "DIGEST_INVALID"
                raise httpx.HTTPError("refused")
        except httpx.HTTPError:
            assert not honest
            assert len(got) < len(WANTED)  # cut short: never a complete wrong answer
        else:
            assert honest, "the mirror completed an answer with the wrong bytes"
            assert bytes(got) == WANTED
        if honest:
            assert wait_until(lambda: cached(server.root, digest))
        else:
            time.sleep(0.5)
            assert not cached(server.root, digest)
            assert list((server.root / "blobs" / "sha256").iterdir()) == []
        assert wait_until(lambda: list((server.root / "tmp").iterdir()) == [])
    finally:
        server.stop()
        fake.shutdown()


def test_manifest_by_sha512_is_cached_under_sha512(tmp_path):
    """A manifest pulled through by a ``sha512:`` digest keeps that digest: it is
    answered, stored and found again (the upstream gone) by it, as a push would be."""
    manifest, blobs = fake_image(b"sha512 layer")
    fake = FakeRegistry({"org/app": ("1", manifest, blobs)})
    server = start_server(tmp_path / "mirror", "--upstream", f"up=http://{fake.host}")
    digest = sha512_of(manifest)
    try:
        url = f"{server.url}/v2/up/org/app/manifests/{digest}"
        r = httpx.get(url, headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200, r.text
        assert r.headers["docker-content-digest"] == digest and r.content == manifest
        revision = server.root / "repos/up/org/app/_manifests/revisions/sha512" / digest[7:]
        assert revision.is_file()
        fake.close()
        for method in ("HEAD", "GET"):
            r = httpx.request(method, url, headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200 and r.headers["docker-content-digest"] == digest
    finally:
        server.stop()


@pytest.mark.parametrize("via", ["config-file", "docker-config"])
def test_upstream_credentials(via, tmp_path, busybox_layout):
    """An upstream that wants a token (our own server in token mode): credentials from
    the server's config file, or from docker's config.json."""
    need("htpasswd")
    htpasswd = tmp_path / "htpasswd"
    run("htpasswd", "-B", "-b", "-c", str(htpasswd), "robot", "pw")
    upstream = start_server(tmp_path / "upstream", "--htpasswd", str(htpasswd), "--auth", "token")
    try:
        copy(
            f"oci:{busybox_layout}:latest",
            f"docker://{upstream.host}/org/private:1",
            "--dest-creds",
            "robot:pw",
        )
        env = {}
        if via == "config-file":
            config = tmp_path / "registry.toml"
            config.write_text(
                f'[[upstream]]\nname = "priv"\nurl = "http://{upstream.host}"\n'
                'username = "robot"\npassword = "pw"\n'
            )
            args = ("--config", str(config))
        else:
            auth_file = tmp_path / "auth.json"
            token = base64.b64encode(b"robot:pw").decode()
            auth_file.write_text(json.dumps({"auths": {upstream.host: {"auth": token}}}))
            env = {"REGISTRY_AUTH_FILE": str(auth_file)}
            args = ("--upstream", f"priv=http://{upstream.host}")
        server = start_server(tmp_path / "mirror", *args, env=env)
        try:
            copy(f"docker://{server.host}/priv/org/private:1", f"oci:{tmp_path}/got:1")
            layout = json.loads((tmp_path / "got" / "index.json").read_text())
            assert (
                manifest_digest(server.url, "priv/org/private", "1")
                == (layout["manifests"][0]["digest"])
            )
        finally:
            server.stop()
    finally:
        upstream.stop()
