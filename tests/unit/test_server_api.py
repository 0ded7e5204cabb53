"""The distribution API in process (Starlette's TestClient): the push, pull, content
discovery and content management workflows of the OCI conformance suite, and the error
codes. Real clients are in tests/e2e/test_server_*.py."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from dockyard.oci import mediatypes as mt
from dockyard.registry.server.app import create_app
from dockyard.registry.server.config import ServerConfig
from tests.support.registry_server import sha256_of as sha


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "registry"


@pytest.fixture
def client(root) -> TestClient:
    with TestClient(create_app(ServerConfig(root))) as c:
        yield c


def push_blob(client: TestClient, name: str, data: bytes) -> str:
    digest = sha(data)
    r = client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", content=data)
    assert r.status_code == 201, r.text
    return digest


def image(
    client: TestClient,
    name: str,
    layers: list[bytes],
    tag: str | None = "latest",
    media_type: str = mt.OCI_MANIFEST,
    **extra,
) -> tuple[bytes, str]:
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    config_type = mt.OCI_CONFIG if media_type == mt.OCI_MANIFEST else mt.DOCKER_CONFIG
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": config_type,
            "digest": push_blob(client, name, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": mt.OCI_LAYER_GZIP,
                "digest": push_blob(client, name, layer),
                "size": len(layer),
            }
            for layer in layers
        ],
        **extra,
    }
    raw = json.dumps(doc).encode()
    digest = sha(raw)
    r = client.put(
        f"/v2/{name}/manifests/{tag or digest}", content=raw, headers={"Content-Type": media_type}
    )
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == digest
    return raw, digest


def error_code(r) -> str:
    return r.json()["errors"][0]["code"]


def test_base_and_version_header(client):
    r = client.get("/v2/")
    assert r.status_code == 200
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"


def test_push_pull_monolithic(client):
    raw, digest = image(client, "team/app", [b"layer-one" * 1000])
    r = client.get("/v2/team/app/manifests/latest", headers={"Accept": mt.OCI_MANIFEST})
    assert r.status_code == 200
    assert r.content == raw
    assert r.headers["content-type"] == mt.OCI_MANIFEST
    assert r.headers["docker-content-digest"] == digest
    assert client.get(f"/v2/team/app/manifests/{digest}").content == raw
    head = client.head("/v2/team/app/manifests/latest")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(raw))
    assert head.headers["docker-content-digest"] == digest
    layer = json.loads(raw)["layers"][0]["digest"]
    blob = client.get(f"/v2/team/app/blobs/{layer}")
    assert blob.content == b"layer-one" * 1000
    assert blob.headers["docker-content-digest"] == layer
    head = client.head(f"/v2/team/app/blobs/{layer}")
    assert head.status_code == 200 and head.headers["content-length"] == "9000"


def test_blob_range(client):
    data = bytes(range(256)) * 100
    digest = push_blob(client, "r/range", data)
    r = client.get(f"/v2/r/range/blobs/{digest}", headers={"Range": "bytes=100-299"})
    assert r.status_code == 206
    assert r.content == data[100:300]
    assert r.headers["content-range"] == f"bytes 100-299/{len(data)}"


@pytest.mark.parametrize(
    "header",
    ["bytes=500-0", "bytes=99999-", "bytes=-0", "items=0-5", "bytes=x-5", "bytes=5"],
)
def test_blob_range_refused_with_error_json(client, header):
    """A Range that cannot be served is a 416 in the distribution error format (with the
    blob's size), never the framework's plain-text 400."""
    data = bytes(range(256)) * 10
    digest = push_blob(client, "r/badrange", data)
    r = client.get(f"/v2/r/badrange/blobs/{digest}", headers={"Range": header})
    assert r.status_code == 416, r.text
    assert error_code(r) == "RANGE_INVALID"
    assert r.headers["content-range"] == f"bytes */{len(data)}"


def test_blob_suffix_and_open_ranges_still_served(client):
    data = bytes(range(256)) * 10
    digest = push_blob(client, "r/okrange", data)
    r = client.get(f"/v2/r/okrange/blobs/{digest}", headers={"Range": "bytes=-100"})
    assert r.status_code == 206 and r.content == data[-100:]
    r = client.get(f"/v2/r/okrange/blobs/{digest}", headers={"Range": "bytes=2500-"})
    assert r.status_code == 206 and r.content == data[2500:]


def test_final_put_out_of_order_is_refused_and_upload_kept(client):
    """The final PUT's Content-Range is checked as a PATCH's is: an out-of-order last
    chunk is a 416 and writes nothing; the upload then finishes in order."""
    data = b"a" * 1024 + b"b" * 1024 + b"c" * 1019
    location = client.post("/v2/c/lastput/blobs/uploads/").headers["location"]
    r = client.patch(location, content=data[:1024], headers={"Content-Range": "0-1023"})
    assert r.status_code == 202
    bad = client.put(
        f"{location}?digest={sha(data)}",
        content=data[2048:],
        headers={"Content-Range": "2048-3066"},
    )
    assert bad.status_code == 416, bad.text
    assert error_code(bad) == "RANGE_INVALID"
    assert bad.headers["range"] == "0-1023"
    assert client.get(location).headers["range"] == "0-1023"  # nothing of it was written
    r = client.patch(location, content=data[1024:2048], headers={"Content-Range": "1024-2047"})
    assert r.status_code == 202
    r = client.put(
        f"{location}?digest={sha(data)}",
        content=data[2048:],
        headers={"Content-Range": "2048-3066"},
    )
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/c/lastput/blobs/{sha(data)}").content == data


def test_session_upload_chunks_and_status(client):
    data = b"x" * 5000 + b"y" * 3000
    r = client.post("/v2/c/chunks/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["location"]
    assert r.headers["docker-upload-uuid"] in location
    r = client.patch(
        location,
        content=data[:5000],
        headers={"Content-Range": "0-4999", "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 202
    assert r.headers["range"] == "0-4999"
    # a chunk out of order is refused with the current range
    bad = client.patch(r.headers["location"], content=b"z", headers={"Content-Range": "10-10"})
    assert bad.status_code == 416
    assert bad.headers["range"] == "0-4999"
    status = client.get(location)
    assert status.status_code == 204 and status.headers["range"] == "0-4999"
    r = client.patch(location, content=data[5000:], headers={"Content-Range": "5000-7999"})
    assert r.headers["range"] == "0-7999"
    r = client.put(f"{location}?digest={sha(data)}")
    assert r.status_code == 201
    assert r.headers["location"] == f"/v2/c/chunks/blobs/{sha(data)}"
    assert client.get(f"/v2/c/chunks/blobs/{sha(data)}").content == data
    assert client.get(location).status_code == 404  # session is gone


def test_streaming_put_with_body(client):
    data = b"streamed" * 100000
    location = client.post("/v2/s/put/blobs/uploads/").headers["location"]

    def body():
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    r = client.put(f"{location}?digest={sha(data)}", content=body())
    assert r.status_code == 201
    assert client.get(f"/v2/s/put/blobs/{sha(data)}").content == data


def test_wrong_digest_keeps_nothing(client, root):
    r = client.post(f"/v2/bad/digest/blobs/uploads/?digest={sha(b'other')}", content=b"data")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert not list((root / "blobs" / "sha256").iterdir())
    assert not list((root / "uploads").iterdir())
    location = client.post("/v2/bad/digest/blobs/uploads/").headers["location"]
    client.patch(location, content=b"data")
    r = client.put(f"{location}?digest={sha(b'other')}")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert client.head(f"/v2/bad/digest/blobs/{sha(b'data')}").status_code == 404
    assert not list((root / "blobs" / "sha256").iterdir())


def test_cross_repo_mount(client):
    digest = push_blob(client, "src/repo", b"shared layer")
    assert client.head(f"/v2/dst/repo/blobs/{digest}").status_code == 404  # repo-scoped
    r = client.post(f"/v2/dst/repo/blobs/uploads/?mount={digest}&from=src/repo")
    assert r.status_code == 201
    assert r.headers["docker-content-digest"] == digest
    assert client.get(f"/v2/dst/repo/blobs/{digest}").content == b"shared layer"
    # unknown source blob: an upload session instead
    r = client.post(f"/v2/dst/repo/blobs/uploads/?mount={sha(b'nope')}&from=src/repo")
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["location"]


def test_manifest_with_missing_blob(client):
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": sha(b"missing"), "size": 7},
        "layers": [],
    }
    r = client.put(
        "/v2/m/missing/manifests/v1",
        content=json.dumps(doc),
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert client.get("/v2/m/missing/manifests/v1").status_code == 404


def test_manifest_invalid_and_digest_mismatch(client):
    r = client.put(
        "/v2/m/bad/manifests/v1", content=b"not json", headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID"
    raw, _ = image(client, "m/bad", [b"l"], tag="ok")
    r = client.put(
        f"/v2/m/bad/manifests/{sha(b'something else')}",
        content=raw,
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = client.put(
        "/v2/m/bad/manifests/v2", content=raw, headers={"Content-Type": mt.DOCKER_MANIFEST}
    )
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID"


def test_unknown_things(client):
    r = client.get(f"/v2/no/such/blobs/{sha(b'x')}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    r = client.get("/v2/no/such/manifests/latest")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"
    image(client, "yes/there", [b"a"])
    r = client.get("/v2/yes/there/manifests/nope")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = client.get("/v2/no/such/tags/list")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"
    r = client.patch("/v2/yes/there/blobs/uploads/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"


@pytest.mark.parametrize(
    "path",
    [
        "/v2/%2e%2e/etc/manifests/latest",
        "/v2/a/%2e%2e/%2e%2e/etc/manifests/latest",
        "/v2/UPPER/case/manifests/latest",
        "/v2/a//b/manifests/latest",
        "/v2/_private/x/manifests/latest",
        "/v2/a/.hidden/tags/list",
        "/v2/" + "a" * 256 + "/manifests/latest",
    ],
)
def test_bad_names(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404)
    assert error_code(r) == "NAME_INVALID"


@pytest.mark.parametrize(
    "path,code",
    [
        ("/v2/a/b/blobs/sha256:../../../etc/passwd", "NAME_INVALID"),
        ("/v2/a/b/blobs/sha256:..", "DIGEST_INVALID"),
        ("/v2/a/b/blobs/sha256:abc", "DIGEST_INVALID"),
        ("/v2/a/b/manifests/sha256:" + "G" * 64, "DIGEST_INVALID"),
        ("/v2/a/b/manifests/%2e%2e", "MANIFEST_UNKNOWN"),
        ("/v2/a/b/blobs/uploads/%2e%2e", "BLOB_UPLOAD_UNKNOWN"),
        ("/v2/a/b/referrers/sha256:%2e%2e", "DIGEST_INVALID"),
    ],
)
def test_traversal_in_digests_tags_uploads(client, root, path, code):
    r = client.get(path)
    assert r.status_code in (400, 404)
    assert error_code(r) == code


def test_traversal_encoded(client, root):
    secret = root.parent / "secret"
    secret.write_text("TOP SECRET")
    for path in (
        "/v2/a%2F..%2F..%2F..%2Fsecret/tags/list",
        "/v2/a/b/blobs/..%2F..%2F..%2Fsecret",
        "/v2/a/b/manifests/..%2F..%2F..%2F..%2Fsecret",
    ):
        r = client.get(path)
        assert r.status_code in (400, 404)
        assert b"TOP SECRET" not in r.content


def test_tags_pagination(client):
    tags = [f"t{i:02d}" for i in range(7)]
    for tag in tags:
        image(client, "p/tags", [b"layer"], tag=tag)
    r = client.get("/v2/p/tags/tags/list")
    assert r.json() == {"name": "p/tags", "tags": tags}
    assert "link" not in r.headers
    r = client.get("/v2/p/tags/tags/list?n=3")
    assert r.json()["tags"] == tags[:3]
    assert r.headers["link"] == '</v2/p/tags/tags/list?n=3&last=t02>; rel="next"'
    r = client.get("/v2/p/tags/tags/list?n=3&last=t02")
    assert r.json()["tags"] == tags[3:6]
    r = client.get("/v2/p/tags/tags/list?n=3&last=t05")
    assert r.json()["tags"] == ["t06"] and "link" not in r.headers


def test_catalog_pagination(client):
    for name in ("c/a", "c/b", "c/c", "d"):
        image(client, name, [b"x"])
    assert client.get("/v2/_catalog").json() == {"repositories": ["c/a", "c/b", "c/c", "d"]}
    r = client.get("/v2/_catalog?n=2")
    assert r.json()["repositories"] == ["c/a", "c/b"]
    assert r.headers["link"] == '</v2/_catalog?n=2&last=c%2Fb>; rel="next"'
    assert client.get("/v2/_catalog?n=2&last=c/b").json()["repositories"] == ["c/c", "d"]


def test_delete_tag_manifest_blob(client):
    raw, digest = image(client, "del/me", [b"to delete"], tag="v1")
    client.put("/v2/del/me/manifests/v2", content=raw, headers={"Content-Type": mt.OCI_MANIFEST})
    assert client.delete("/v2/del/me/manifests/v1").status_code == 202
    assert client.get("/v2/del/me/manifests/v1").status_code == 404
    assert client.get("/v2/del/me/manifests/v2").status_code == 200
    assert client.delete(f"/v2/del/me/manifests/{digest}").status_code == 202
    assert client.get(f"/v2/del/me/manifests/{digest}").status_code == 404
    assert client.get("/v2/del/me/manifests/v2").status_code == 404
    assert client.get("/v2/del/me/tags/list").json()["tags"] == []
    layer = json.loads(raw)["layers"][0]["digest"]
    assert client.delete(f"/v2/del/me/blobs/{layer}").status_code == 202
    assert client.get(f"/v2/del/me/blobs/{layer}").status_code == 404
    assert client.delete(f"/v2/del/me/blobs/{layer}").status_code == 404


def test_index_and_accept_negotiation(client):
    raw_amd, amd = image(client, "multi/arch", [b"amd64 layer"], tag=None)
    raw_arm, arm = image(client, "multi/arch", [b"arm64 layer"], tag=None)
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": amd,
                "size": len(raw_amd),
                "platform": {"os": "linux", "architecture": "amd64"},
            },
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": arm,
                "size": len(raw_arm),
                "platform": {"os": "linux", "architecture": "arm64"},
            },
        ],
    }
    raw = json.dumps(index).encode()
    r = client.put(
        "/v2/multi/arch/manifests/latest", content=raw, headers={"Content-Type": mt.OCI_INDEX}
    )
    assert r.status_code == 201
    r = client.get("/v2/multi/arch/manifests/latest", headers={"Accept": mt.MANIFEST_ACCEPT})
    assert r.headers["content-type"] == mt.OCI_INDEX and r.content == raw
    # a client that only takes single manifests gets the host's platform
    r = client.get("/v2/multi/arch/manifests/latest", headers={"Accept": mt.OCI_MANIFEST})
    assert r.headers["content-type"] == mt.OCI_MANIFEST
    assert r.headers["docker-content-digest"] == amd
    # an index naming a manifest that is not there
    index["manifests"].append(
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": sha(b"ghost"),
            "size": 5,
            "platform": {"os": "linux", "architecture": "s390x"},
        }
    )
    r = client.put(
        "/v2/multi/arch/manifests/broken",
        content=json.dumps(index),
        headers={"Content-Type": mt.OCI_INDEX},
    )
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_docker_media_types(client):
    raw, _ = image(client, "docker/v2s2", [b"d"], media_type=mt.DOCKER_MANIFEST)
    r = client.get("/v2/docker/v2s2/manifests/latest", headers={"Accept": mt.DOCKER_MANIFEST})
    assert r.headers["content-type"] == mt.DOCKER_MANIFEST
    assert r.content == raw


def test_referrers(client):
    _, subject = image(client, "ref/app", [b"app"], tag="v1")
    empty = push_blob(client, "ref/app", b"{}")

    def artifact(kind: str, note: bytes) -> str:
        layer = push_blob(client, "ref/app", note)
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": kind,
            "config": {"mediaType": mt.OCI_EMPTY, "digest": empty, "size": 2},
            "layers": [{"mediaType": "text/plain", "digest": layer, "size": len(note)}],
            "subject": {"mediaType": mt.OCI_MANIFEST, "digest": subject, "size": 1},
            "annotations": {"note": note.decode()},
        }
        raw = json.dumps(doc).encode()
        r = client.put(
            f"/v2/ref/app/manifests/{sha(raw)}",
            content=raw,
            headers={"Content-Type": mt.OCI_MANIFEST},
        )
        assert r.status_code == 201
        assert r.headers["oci-subject"] == subject
        return sha(raw)

    sig = artifact("application/vnd.example.signature", b"signed")
    sbom = artifact("application/vnd.example.sbom", b"sbom")
    r = client.get(f"/v2/ref/app/referrers/{subject}")
    assert r.status_code == 200
    assert r.headers["content-type"] == mt.OCI_INDEX
    found = {m["digest"]: m for m in r.json()["manifests"]}
    assert set(found) == {sig, sbom}
    assert found[sig]["artifactType"] == "application/vnd.example.signature"
    assert found[sig]["annotations"] == {"note": "signed"}
    r = client.get(f"/v2/ref/app/referrers/{subject}?artifactType=application/vnd.example.sbom")
    assert [m["digest"] for m in r.json()["manifests"]] == [sbom]
    assert r.headers["oci-filters-applied"] == "artifactType"
    client.delete(f"/v2/ref/app/manifests/{sig}")
    r = client.get(f"/v2/ref/app/referrers/{subject}")
    assert [m["digest"] for m in r.json()["manifests"]] == [sbom]
    r = client.get(f"/v2/ref/app/referrers/{sha(b'nothing refers to this')}")
    assert r.status_code == 200 and r.json()["manifests"] == []


def test_read_only(root):
    with TestClient(create_app(ServerConfig(root))) as c:
        image(c, "ro/app", [b"ro"])
    with TestClient(create_app(ServerConfig(root, read_only=True))) as c:
        assert c.get("/v2/ro/app/manifests/latest").status_code == 200
        r = c.post("/v2/ro/app/blobs/uploads/")
        assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"
        assert c.delete("/v2/ro/app/manifests/latest").status_code == 405


def test_uploads_survive_a_restart(root):
    data = b"a" * 3000 + b"b" * 3000
    with TestClient(create_app(ServerConfig(root))) as c:
        location = c.post("/v2/re/start/blobs/uploads/").headers["location"]
        c.patch(location, content=data[:3000])
    with TestClient(create_app(ServerConfig(root))) as c:  # hash state is gone: re-hashed
        assert c.get(location).headers["range"] == "0-2999"
        c.patch(location, content=data[3000:], headers={"Content-Range": "3000-5999"})
        assert c.put(f"{location}?digest={sha(data)}").status_code == 201
        assert c.get(f"/v2/re/start/blobs/{sha(data)}").content == data


def test_sha512_blob(client):
    data = b"sha512 content"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    r = client.post(f"/v2/h/512/blobs/uploads/?digest={digest}", content=data)
    assert r.status_code == 201
    assert client.get(f"/v2/h/512/blobs/{digest}").content == data


def test_sha512_manifest_kept_as_pushed(client):
    """A manifest pushed by a sha512 digest is stored, answered and found under that
    digest, and an index may name it by it."""
    raw, _ = image(client, "h/m512", [b"layer"], tag="t")
    digest = "sha512:" + hashlib.sha512(raw).hexdigest()
    r = client.put(
        f"/v2/h/m512/manifests/{digest}", content=raw, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == digest
    assert r.headers["location"] == f"/v2/h/m512/manifests/{digest}"
    for method in ("GET", "HEAD"):
        got = client.request(method, f"/v2/h/m512/manifests/{digest}")
        assert got.status_code == 200
        assert got.headers["docker-content-digest"] == digest
    assert client.get(f"/v2/h/m512/manifests/{digest}").content == raw
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(raw)}],
        }
    ).encode()
    index_digest = "sha512:" + hashlib.sha512(index).hexdigest()
    r = client.put(
        f"/v2/h/m512/manifests/{index_digest}",
        content=index,
        headers={"Content-Type": mt.OCI_INDEX},
    )
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == index_digest
    assert client.delete(f"/v2/h/m512/manifests/{digest}").status_code == 202
    assert client.get(f"/v2/h/m512/manifests/{digest}").status_code == 404


def test_sha512_manifest_digest_must_match(client):
    raw, _ = image(client, "h/m512bad", [b"layer"], tag="t")
    wrong = "sha512:" + hashlib.sha512(raw + b" ").hexdigest()
    r = client.put(
        f"/v2/h/m512bad/manifests/{wrong}", content=raw, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert client.get(f"/v2/h/m512bad/manifests/{wrong}").status_code == 404


@pytest.mark.parametrize("tag", [".INVALID", "-x", "a" * 129, "a%20b"])
def test_invalid_tags_get_the_spec_codes(client, tag):
    """No manifest can be under a tag the grammar refuses: reading or deleting one is the
    spec's 404 MANIFEST_UNKNOWN; putting one is 400 MANIFEST_INVALID (TAG_INVALID is a
    Docker schema1 code the spec does not list)."""
    raw, _ = image(client, "t/bad", [b"layer"], tag="ok")
    for method in ("GET", "HEAD", "DELETE"):
        r = client.request(method, f"/v2/t/bad/manifests/{tag}")
        assert r.status_code == 404, (method, r.text)
        if method != "HEAD":
            assert error_code(r) == "MANIFEST_UNKNOWN"
    r = client.put(
        f"/v2/t/bad/manifests/{tag}", content=raw, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID"
    assert client.get("/v2/t/bad/tags/list").json()["tags"] == ["ok"]
