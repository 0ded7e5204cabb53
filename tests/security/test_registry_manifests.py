"""Hostile manifests: pushed by a client (wrong media type, too big, too deep, lying
descriptor sizes, blobs passed off as manifests) or sent by a lying upstream to the
pull-through mirror. Each is refused with the distribution error JSON and nothing of it
is stored or served; every response says ``X-Content-Type-Options: nosniff``."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from dockyard.oci import mediatypes as mt
from dockyard.registry.server.app import create_app
from dockyard.registry.server.config import ServerConfig
from tests.support.http import serve_in_thread
from tests.support.registry_server import sha256_of as sha
from tests.support.registry_server import start_server
from tests.support.waiting import PATIENCE

LIMIT = 4 << 20


@pytest.fixture
def client(tmp_path) -> TestClient:
    with TestClient(create_app(ServerConfig(tmp_path / "registry"))) as c:
        yield c


def push_blob(client, name: str, data: bytes) -> str:
    r = client.post(f"/v2/{name}/blobs/uploads/?digest={sha(data)}", content=data)
    assert r.status_code == 201, r.text
    return sha(data)


def manifest_doc(client, name: str, **lie: int) -> dict:
    """An OCI manifest (no mediaType field) whose blobs are pushed; ``config=N`` or
    ``layer=N`` adds N to that descriptor's true size."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = b"a layer"
    return {
        "schemaVersion": 2,
        "config": {
            "mediaType": mt.OCI_CONFIG,
            "digest": push_blob(client, name, config),
            "size": len(config) + lie.get("config", 0),
        },
        "layers": [
            {
                "mediaType": mt.OCI_LAYER_GZIP,
                "digest": push_blob(client, name, layer),
                "size": len(layer) + lie.get("layer", 0),
            }
        ],
    }


def error_code(response) -> str:
    return response.json()["errors"][0]["code"]


def put(client, name: str, ref: str, raw: bytes, content_type: str | None):
    headers = {"Content-Type": content_type} if content_type else {}
    return client.put(f"/v2/{name}/manifests/{ref}", content=raw, headers=headers)


# -- media types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/html", "application/json", "application/octet-stream", None]
)
def test_only_manifest_media_types_are_stored(client, content_type):
    raw = json.dumps(manifest_doc(client, "web/page")).encode()
    r = put(client, "web/page", "latest", raw, content_type)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_INVALID"
    assert client.get("/v2/web/page/manifests/latest").status_code == 404
    assert client.get(f"/v2/web/page/manifests/{sha(raw)}").status_code == 404


@pytest.mark.parametrize(
    ("content_type", "declared"),
    [
        (mt.DOCKER_MANIFEST, mt.OCI_MANIFEST),
        (mt.OCI_MANIFEST, "text/html"),
        (None, "text/html"),
        (mt.OCI_INDEX, mt.OCI_MANIFEST),
    ],
)
def test_content_type_agrees_with_the_documents_media_type(client, content_type, declared):
    doc = {**manifest_doc(client, "mixed/up"), "mediaType": declared}
    r = put(client, "mixed/up", "latest", json.dumps(doc).encode(), content_type)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_INVALID"
    assert client.get("/v2/mixed/up/manifests/latest").status_code == 404


@pytest.mark.parametrize(
    ("content_type", "declared"),
    [(mt.OCI_MANIFEST, None), (mt.OCI_MANIFEST, mt.OCI_MANIFEST), (None, mt.OCI_MANIFEST)],
)
def test_a_real_manifest_is_stored_with_its_type(client, content_type, declared):
    doc = manifest_doc(client, "fine/one")
    if declared:
        doc["mediaType"] = declared
    r = put(client, "fine/one", "latest", json.dumps(doc).encode(), content_type)
    assert r.status_code == 201, r.text
    got = client.get("/v2/fine/one/manifests/latest")
    assert got.headers["content-type"] == mt.OCI_MANIFEST


def test_schema1_is_refused(client):
    doc = {"schemaVersion": 1, "name": "old/one", "tag": "1", "fsLayers": [], "history": []}
    signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    r = put(client, "old/one", "1", json.dumps(doc).encode(), signed)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_INVALID"


# -- size and depth --------------------------------------------------------------------


def test_manifest_over_the_limit_is_413(client):
    doc = manifest_doc(client, "big/one")
    doc["annotations"] = {"padding": "x" * LIMIT}
    r = put(client, "big/one", "latest", json.dumps(doc).encode(), mt.OCI_MANIFEST)
    assert r.status_code == 413
    assert error_code(r) == "PAYLOAD_TOO_LARGE"


def test_chunked_manifest_is_cut_off_while_it_is_read(tmp_path):
    """A chunked body with no length: the 413 comes once the limit is passed, while the
    client is still sending (it would send 64 MiB)."""
    server = start_server(tmp_path / "srv")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
            s.sendall(
                b"PUT /v2/big/chunked/manifests/latest HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: " + mt.OCI_MANIFEST.encode() + b"\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
            sent = 0
            answer = b""
            while sent < 64 << 20 and b"\r\n\r\n" not in answer:
                try:
                    s.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(chunk)
                if select.select([s], [], [], 0)[0]:
                    answer += s.recv(65536)
            while b"PAYLOAD_TOO_LARGE" not in answer and (more := s.recv(65536)):
                answer += more
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"PAYLOAD_TOO_LARGE" in answer
        assert sent < 16 << 20, f"server read {sent} bytes before refusing"
    finally:
        server.stop()


@pytest.mark.parametrize("where", ["top", "annotation"])
def test_deeply_nested_json_is_400_not_500(client, where):
    deep = b"[" * 100_000 + b"]" * 100_000
    if where == "top":
        raw = deep
    else:
        raw = json.dumps(manifest_doc(client, "deep/one")).encode()
        raw = raw[:-1] + b', "annotations": {"a": ' + deep + b"}}"
    r = put(client, "deep/one", "latest", raw, mt.OCI_MANIFEST)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_INVALID"
    assert "nested" in r.json()["errors"][0]["message"]


# -- descriptors -----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["config", "layer"])
@pytest.mark.parametrize("delta", [-1, 1, 1 << 30])
def test_descriptor_size_must_match_the_blob(client, which, delta):
    doc = manifest_doc(client, "sizes/one", **{which: delta})
    r = put(client, "sizes/one", "latest", json.dumps(doc).encode(), mt.OCI_MANIFEST)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_INVALID"
    assert client.get("/v2/sizes/one/manifests/latest").status_code == 404


def test_index_entry_size_must_match_the_child(client):
    child = json.dumps(manifest_doc(client, "sizes/index")).encode()
    assert put(client, "sizes/index", sha(child), child, mt.OCI_MANIFEST).status_code == 201
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": sha(child), "size": 1}],
    }
    r = put(client, "sizes/index", "latest", json.dumps(index).encode(), mt.OCI_INDEX)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_INVALID"


@pytest.mark.parametrize("blob", ["big", "html"])
def test_a_blob_is_never_linked_or_served_as_a_manifest(client, blob):
    """An index naming a plain blob as its child: the blob does not become a manifest
    (before: it was linked, and every GET read it whole into memory)."""
    data = b"\0" * (LIMIT + 1) if blob == "big" else b"<script>alert(1)</script>"
    digest = push_blob(client, "other/repo", data)
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(data)}],
    }
    r = put(client, "blob/index", "latest", json.dumps(index).encode(), mt.OCI_INDEX)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    for name in ("blob/index", "other/repo"):
        assert client.get(f"/v2/{name}/manifests/{digest}").status_code == 404


def test_only_stored_manifests_are_served(client, tmp_path):
    """A revision link left by an older version for a blob that is no manifest (or a
    huge one) is not served, and the blob is not read."""
    root = tmp_path / "registry"
    big = push_blob(client, "old/links", b"\0" * (LIMIT + 1))
    html = push_blob(client, "old/links", b"<html><script>alert(1)</script></html>")
    revisions = root / "repos" / "old" / "links" / "_manifests" / "revisions" / "sha256"
    revisions.mkdir(parents=True)
    (revisions / big.split(":")[1]).write_text(mt.OCI_MANIFEST)
    (revisions / html.split(":")[1]).write_text("text/html")
    for digest in (big, html):
        assert client.get(f"/v2/old/links/manifests/{digest}").status_code == 404
        assert client.head(f"/v2/old/links/manifests/{digest}").status_code == 404


# -- nosniff ---------------------------------------------------------------------------


def test_every_response_says_nosniff(client):
    raw = json.dumps({**manifest_doc(client, "sniff/me"), "mediaType": mt.OCI_MANIFEST})
    layer = json.loads(raw)["layers"][0]["digest"]
    responses = [
        client.get("/v2/"),
        client.get("/v2/_catalog"),
        put(client, "sniff/me", "latest", raw.encode(), mt.OCI_MANIFEST),
        client.get("/v2/sniff/me/manifests/latest"),
        client.head("/v2/sniff/me/manifests/latest"),
        client.get(f"/v2/sniff/me/blobs/{layer}"),
        client.post("/v2/sniff/me/blobs/uploads/"),
        client.get("/v2/sniff/me/manifests/nope"),
        client.get("/v2/sniff/me/tags/list"),
        client.get("/nowhere"),
        put(client, "sniff/me", "x", b"<html>", "text/html"),
    ]
    for r in responses:
        assert r.headers.get("x-content-type-options") == "nosniff", (r.request.url, r.headers)


# -- a lying upstream ------------------------------------------------------------------

GOOD_CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


def good_manifest() -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": sha(GOOD_CONFIG), "size": 80},
            "layers": [],
        }
    ).encode()


class _LyingUpstream(BaseHTTPRequestHandler):
    """A registry that answers every manifest request with ``manifest`` (typed
    ``content_type``, claiming ``claimed`` as its digest) and every blob with ``blob``."""

    protocol_version = "HTTP/1.1"
    manifest = good_manifest()
    content_type = mt.OCI_MANIFEST
    claimed: str | None = None
    blob = b"what we want"

    def do_HEAD(self):
        self._answer(send_body=False)

    def do_GET(self):
        self._answer(send_body=True)

    def _answer(self, send_body: bool):
        if self.path == "/v2/":
            body, headers = b"", {}
        elif "/manifests/" in self.path:
            body = self.manifest
            headers = {
                "Content-Type": self.content_type,
                "Docker-Content-Digest": self.claimed or sha(self.manifest),
            }
        else:
            body, headers = self.blob, {"Content-Type": "application/octet-stream"}
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    def log_message(self, *args):
        pass


def nothing_cached(root: Path, local: str) -> bool:
    repo = root / "repos" / local
    return (
        not any((root / "blobs" / "sha256").iterdir())
        and not any((root / "tmp").iterdir())
        and not (repo / "_manifests").exists()
        and not (repo / "_layers").exists()
    )


@pytest.fixture
def lying(tmp_path):
    """``start(**lies)``: a fake upstream telling those lies, mirrored as ``up/``."""
    started = []

    def start(**lies):
        handler = type("Handler", (_LyingUpstream,), lies)
        fake = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        serve_in_thread(fake)
        server = start_server(
            tmp_path / "mirror", "--upstream", f"up=http://127.0.0.1:{fake.server_address[1]}"
        )
        started.append((fake, server))
        return server

    yield start
    for fake, server in started:
        server.stop()
        fake.shutdown()


WRONG = sha(b"something else")


@pytest.mark.parametrize(
    ("lies", "reference"),
    [
        ({}, WRONG),  # asked by digest, sends other bytes
        ({"claimed": WRONG}, "latest"),  # by tag, its digest header lies
        ({"manifest": good_manifest() + b" " * LIMIT}, "latest"),  # oversized
        ({"manifest": good_manifest().replace(b"vnd.oci.image.manifest.v1+json", b"html")}, "l"),
        ({"manifest": b"[" * 100_000 + b"]" * 100_000}, "latest"),  # nesting bomb
        ({"manifest": b"<html><script>alert(1)</script></html>"}, "latest"),
    ],
    ids=["digest-mismatch", "tag-digest-lie", "oversized", "html-type", "deep", "not-json"],
)
def test_lying_upstream_manifest_is_502_and_not_cached(lying, lies, reference):
    server = lying(**lies)
    r = httpx.get(
        f"{server.url}/v2/up/org/app/manifests/{reference}",
        headers={"Accept": mt.MANIFEST_ACCEPT},
        timeout=30,
    )
    assert r.status_code == 502, r.text
    assert error_code(r) == "MANIFEST_INVALID"
    assert "upstream up sent a bad manifest" in r.json()["errors"][0]["message"]
    assert nothing_cached(server.root, "up/org/app")
    assert "Traceback" not in server.logs()


def test_lying_upstream_blob_is_502_and_not_cached(lying):
    server = lying(blob=b"what we WANT")
    digest = sha(b"what we want")
    r = httpx.get(f"{server.url}/v2/up/org/app/blobs/{digest}", timeout=30)
    assert r.status_code == 502, r.text
    assert error_code(r) == "DIGEST_INVALID"
    assert "upstream up sent wrong bytes" in r.json()["errors"][0]["message"]
    deadline = time.monotonic() + PATIENCE
    while not nothing_cached(server.root, "up/org/app") and time.monotonic() < deadline:
        time.sleep(0.05)  # the download's clean-up runs after the answer
    assert nothing_cached(server.root, "up/org/app")


def test_honest_upstream_is_cached(lying):
    """The fake upstream itself is sound: told no lies, the mirror serves and caches."""
    server = lying()
    r = httpx.get(f"{server.url}/v2/up/org/app/manifests/latest", timeout=30)
    assert r.status_code == 200, r.text
    assert r.content == good_manifest()
    r = httpx.get(f"{server.url}/v2/up/org/app/blobs/{sha(b'what we want')}", timeout=30)
    assert r.status_code == 200 and r.content == b"what we want"
