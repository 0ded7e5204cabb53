"""The registry on an S3-compatible object store (SeaweedFS on loopback), two replicas on
one bucket: uploads whose chunks alternate between them, a replica killed mid-push and the
client's retry on the other, digests verified before a blob is visible, abandoned uploads
cleaned by gc, gc racing pushes, skopeo through both."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
import uuid

import httpx
import pytest

from dockyard.registry.server.config import ServerConfig
from dockyard.registry.server.gc import collect
from dockyard.registry.server.s3storage import PART_SIZE, S3Blobs, S3Storage
from tests.conftest import need
from tests.support.registry_server import (
    copy,
    fake_image,
    manifest_digest,
    sha256_of,
    skopeo,
    start_server,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def prefix() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def replicas(seaweed, prefix, tmp_path_factory):
    """Two ``registry serve`` processes on one bucket prefix."""
    args = seaweed.storage_args(prefix=prefix)
    started = []
    try:
        for n in (1, 2):
            workdir = tmp_path_factory.mktemp(f"replica{n}")
            started.append(start_server(workdir, *args, env=seaweed.env))
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def storage(seaweed, prefix) -> S3Storage:
    """The replicas' bucket prefix, opened in the test process (as ``registry gc`` does)."""
    os.environ.update({k: v for k, v in seaweed.env.items() if k.startswith("AWS_")})
    os.environ.pop("AWS_CA_BUNDLE", None)
    config = ServerConfig(
        root=seaweed.workdir,
        storage=f"s3://registry/{prefix}",
        s3_endpoint=seaweed.endpoint,
        s3_region="us-east-1",
    )
    return S3Storage.from_config(config)


def keys(seaweed, prefix: str, under: str) -> list[str]:
    listed = seaweed.client().list_objects_v2(Bucket="registry", Prefix=f"{prefix}/{under}")
    return [o["Key"] for o in listed.get("Contents", ())]


def chunked_upload(servers, name: str, data: bytes, chunk: int, digest: str) -> httpx.Response:
    """POST, PATCH chunks and the final PUT, each request to the next server in turn."""
    urls = [s.url for s in servers]
    r = httpx.post(f"{urls[0]}/v2/{name}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    offset = 0
    for i, piece in enumerate(pieces[:-1]):
        r = httpx.patch(
            urls[(i + 1) % len(urls)] + location,
            content=piece,
            headers={
                "Content-Range": f"{offset}-{offset + len(piece) - 1}",
                "Content-Type": "application/octet-stream",
            },
            timeout=60,
        )
        assert r.status_code == 202, r.text
        offset += len(piece)
        assert r.headers["range"] == f"0-{offset - 1}"
        location = r.headers["location"]
    last = pieces[-1]
    return httpx.put(
        urls[len(pieces) % len(urls)] + location,
        params={"digest": digest},
        content=last,
        headers={"Content-Range": f"{offset}-{offset + len(last) - 1}"},
        timeout=60,
    )


def test_chunked_upload_alternating_between_replicas(replicas, seaweed, prefix):
    data = os.urandom(2 * PART_SIZE + 3 * 1024 * 1024) + b"end"  # parts cut across requests
    digest = sha256_of(data)
    name = f"alt/{uuid.uuid4().hex[:8]}"
    r = chunked_upload(replicas, name, data, 3 * 1024 * 1024 + 17, digest)
    assert r.status_code == 201, r.text
    for server in replicas:
        got = httpx.get(f"{server.url}/v2/{name}/blobs/{digest}", timeout=60)
        assert got.status_code == 200 and sha256_of(got.content) == digest
    part = httpx.get(
        f"{replicas[1].url}/v2/{name}/blobs/{digest}", headers={"Range": "bytes=100-199"}
    )
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    suffix = httpx.get(f"{replicas[0].url}/v2/{name}/blobs/{digest}", headers={"Range": "bytes=-3"})
    assert suffix.status_code == 206 and suffix.content == b"end"
    assert keys(seaweed, prefix, "uploads/") == []  # the session is gone with its parts


def test_wrong_digest_leaves_nothing_visible(replicas, seaweed, prefix):
    data = os.urandom(PART_SIZE + 1000)
    wrong = sha256_of(data + b"x")
    name = f"bad/{uuid.uuid4().hex[:8]}"
    r = chunked_upload(replicas, name, data, 2 * 1024 * 1024, wrong)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    algorithm, hex_part = wrong.split(":")
    assert keys(seaweed, prefix, f"blobs/{algorithm}/{hex_part}") == []
    assert keys(seaweed, prefix, f"blobs/sha256/{sha256_of(data)[7:]}") == []
    for server in replicas:
        assert httpx.head(f"{server.url}/v2/{name}/blobs/{wrong}").status_code == 404
    assert keys(seaweed, prefix, "uploads/") == []


def test_abandoned_upload_is_cleaned_by_gc(replicas, seaweed, prefix, storage):
    name = f"gone/{uuid.uuid4().hex[:8]}"
    r = httpx.post(f"{replicas[0].url}/v2/{name}/blobs/uploads/")
    location = r.headers["location"]
    r = httpx.patch(replicas[1].url + location, content=os.urandom(PART_SIZE + 5), timeout=60)
    assert r.status_code == 202
    upload_id = location.rsplit("/", 1)[1]
    client = seaweed.client()
    pending = client.list_multipart_uploads(Bucket="registry", Prefix=f"{prefix}/uploads/")
    assert [u["Key"] for u in pending.get("Uploads", ())] == [f"{prefix}/uploads/{upload_id}/data"]
    result = collect(storage, upload_max_age=0)
    assert upload_id in result.uploads_removed
    assert keys(seaweed, prefix, f"uploads/{upload_id}") == []
    pending = client.list_multipart_uploads(Bucket="registry", Prefix=f"{prefix}/uploads/")
    assert pending.get("Uploads", []) == []
    assert httpx.get(replicas[0].url + location).status_code == 404


def test_gc_racing_pushes_keeps_what_they_name(replicas, storage, seaweed, prefix):
    """gc with no grace at all runs again and again while two clients push images through
    both replicas at once: a manifest the registry accepted always has every blob it
    names."""
    accepted: list[tuple[str, bytes, dict[str, bytes]]] = []
    errors: list[BaseException] = []

    def push(client: int) -> None:
        try:
            for i in range(8):
                server = replicas[(i + client) % 2]
                name = f"race/{uuid.uuid4().hex[:8]}"
                manifest, blobs = fake_image(os.urandom(2000))
                for digest, blob in blobs.items():
                    httpx.post(
                        f"{server.url}/v2/{name}/blobs/uploads/",
                        params={"digest": digest},
                        content=blob,
                        timeout=60,
                    ).raise_for_status()
                r = httpx.put(
                    f"{server.url}/v2/{name}/manifests/v1",
                    content=manifest,
                    headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                    timeout=60,
                )
                if r.status_code == 201:
                    accepted.append((name, manifest, blobs))
                else:  # gc took a blob before the manifest came: refused, never half-stored
                    assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", r.text
        except BaseException as e:
            errors.append(e)

    pushers = [threading.Thread(target=push, args=(client,)) for client in (0, 1)]
    for pusher in pushers:
        pusher.start()
    rounds = 0
    while any(pusher.is_alive() for pusher in pushers):
        collect(storage, grace=0)
        rounds += 1
    for pusher in pushers:
        pusher.join()
    assert not errors, errors
    assert rounds > 1 and accepted
    stray = f"touched/sha256/{'0' * 64}"  # a marker whose blob is gone
    storage.bucket.put(stray, b"")
    collect(storage, grace=0, upload_max_age=0)
    blobs = {k.split("/blobs/", 1)[1] for k in keys(seaweed, prefix, "blobs/")}
    touched = {k.split("/touched/", 1)[1] for k in keys(seaweed, prefix, "touched/")}
    assert touched and touched <= blobs  # the stray marker went, none of the others
    listed = keys(seaweed, prefix, "repos/race/")
    links = [k.split("/_layers/", 1)[1] for k in listed if "/_layers/" in k]
    assert links and [k for k in links if k not in blobs] == []  # none to a gone blob
    for name, manifest, blobs in accepted:
        for server in replicas:
            assert manifest_digest(server.url, name, "v1") == sha256_of(manifest)
            for digest, blob in blobs.items():
                got = httpx.get(f"{server.url}/v2/{name}/blobs/{digest}")
                assert got.status_code == 200 and got.content == blob, (name, digest)


def test_skopeo_through_both_replicas(replicas, busybox_layout, tmp_path):
    first, second = replicas
    name = f"skopeo/{uuid.uuid4().hex[:8]}"
    copy(f"oci:{busybox_layout}:latest", f"docker://{first.host}/{name}:1")
    copy(f"docker://{second.host}/{name}:1", f"docker://{second.host}/{name}:2")
    out = tmp_path / "pulled"
    copy(f"docker://{second.host}/{name}:2", f"oci:{out}:x")
    assert manifest_digest(first.url, name, "2") == manifest_digest(second.url, name, "1")
    inspected = json.loads(
        skopeo("inspect", "--tls-verify=false", f"docker://{first.host}/{name}:2").stdout
    )
    index = json.loads((out / "index.json").read_text())
    pulled = index["manifests"][0]["digest"]
    assert inspected["Digest"] == pulled
    for layer in inspected["Layers"]:
        algorithm, hex_part = layer.split(":")
        blob = (out / "blobs" / algorithm / hex_part).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == hex_part


def test_redirect_answers_blob_gets_with_presigned_urls(replicas, seaweed, prefix, tmp_path):
    """``--redirect``: a blob ``GET`` is a 307 to a pre-signed URL that the object store
    serves (a ``Range`` too) without the registry; ``HEAD`` is answered directly; a blob
    not linked in the repository is still a 404, never a URL. Off by default."""
    data = os.urandom(PART_SIZE + 5)
    digest = sha256_of(data)
    name = f"redirect/{uuid.uuid4().hex[:8]}"
    r = httpx.post(
        f"{replicas[0].url}/v2/{name}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    assert httpx.get(f"{replicas[0].url}/v2/{name}/blobs/{digest}", timeout=60).status_code == 200
    args = seaweed.storage_args(prefix=prefix)
    server = start_server(tmp_path / "redirect", *args, "--redirect", env=seaweed.env)
    try:
        url = f"{server.url}/v2/{name}/blobs/{digest}"
        r = httpx.get(url)
        assert r.status_code == 307, r.text
        assert r.headers["docker-content-digest"] == digest
        location = r.headers["location"]
        assert location.startswith(seaweed.endpoint) and "X-Amz-Signature=" in location
        assert httpx.get(location, timeout=60).content == data
        part = httpx.get(url, headers={"Range": "bytes=10-19"}, follow_redirects=True)
        assert part.status_code == 206 and part.content == data[10:20]
        head = httpx.head(url)
        assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
        r = httpx.get(f"{server.url}/v2/elsewhere/{uuid.uuid4().hex[:8]}/blobs/{digest}")
        assert r.status_code == 404 and "location" not in r.headers
    finally:
        server.stop()


def _parts_uploaded(seaweed, prefix: str, upload_id: str) -> int:
    """How many parts the multipart uploads of one session hold in the store."""
    client = seaweed.client()
    pending = client.list_multipart_uploads(
        Bucket="registry", Prefix=f"{prefix}/uploads/{upload_id}/"
    )
    return sum(
        len(
            client.list_parts(Bucket="registry", Key=u["Key"], UploadId=u["UploadId"]).get(
                "Parts", []
            )
        )
        for u in pending.get("Uploads", ())
    )


@pytest.mark.parametrize("first", [0, PART_SIZE + 1000], ids=["first-patch", "later-patch"])
def test_replica_killed_mid_push_client_retries_on_the_other(
    replicas, seaweed, prefix, storage, tmp_path, first
):
    """A replica is SIGKILLed while a ``PATCH`` streams into it, after it uploaded parts
    the session's state never recorded (into a multipart upload the state names, or one
    it never got to name): the client asks the surviving replica where the upload stands,
    sends the rest there, and the blob and its manifest complete; gc later removes what
    the dead replica left (an orphaned multipart upload), and nothing in use."""
    survivor = replicas[0]
    doomed = start_server(
        tmp_path / "doomed", *seaweed.storage_args(prefix=prefix), env=seaweed.env
    )
    try:
        layer = os.urandom(4 * PART_SIZE + 12345)
        manifest, blobs = fake_image(layer)
        digest = sha256_of(layer)
        name = f"killed/{uuid.uuid4().hex[:8]}"
        r = httpx.post(f"{doomed.url}/v2/{name}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = r.headers["location"]
        upload_id = location.rsplit("/", 1)[1]
        if first:  # a whole part recorded in the state, and a tail
            r = httpx.patch(
                doomed.url + location,
                content=layer[:first],
                headers={"Content-Range": f"0-{first - 1}"},
                timeout=60,
            )
            assert r.status_code == 202, r.text
        recorded = _parts_uploaded(seaweed, prefix, upload_id)

        def body():
            sent = first
            while sent < len(layer):
                if sent >= first + 3 * PART_SIZE and doomed.process.poll() is None:
                    deadline = time.monotonic() + 60
                    while _parts_uploaded(seaweed, prefix, upload_id) < recorded + 2:
                        assert time.monotonic() < deadline, "the replica uploaded no parts"
                        time.sleep(0.05)
                    doomed.stop(kill=True)  # mid-request, with parts the state doesn't name
                yield layer[sent : sent + (1 << 20)]
                sent += 1 << 20

        with pytest.raises(httpx.TransportError):
            httpx.patch(
                doomed.url + location,
                content=body(),
                headers={"Content-Range": f"{first}-{len(layer) - 1}"},
                timeout=60,
            )
        assert doomed.process.returncode == -9
        # the client's retry: where does the upload stand, on the replica still there
        r = httpx.get(survivor.url + location)
        assert r.status_code == 204, r.text
        assert r.headers["range"] == f"0-{max(first - 1, 0)}"  # what the dead one recorded
        offset = first
        r = httpx.put(
            survivor.url + location,
            params={"digest": digest},
            content=layer[offset:],
            headers={"Content-Range": f"{offset}-{len(layer) - 1}"},
            timeout=120,
        )
        assert r.status_code == 201, r.text
        for blob_digest, blob in blobs.items():
            if blob_digest != digest:
                httpx.post(
                    f"{survivor.url}/v2/{name}/blobs/uploads/",
                    params={"digest": blob_digest},
                    content=blob,
                ).raise_for_status()
        r = httpx.put(
            f"{survivor.url}/v2/{name}/manifests/v1",
            content=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert r.status_code == 201, r.text
        got = httpx.get(f"{survivor.url}/v2/{name}/blobs/{digest}", timeout=60)
        assert got.status_code == 200 and sha256_of(got.content) == digest
        left = _parts_uploaded(seaweed, prefix, upload_id)  # the orphan of the dead replica
        assert (left >= 2) == (first == 0), left
        collect(storage, upload_max_age=0)
        assert _parts_uploaded(seaweed, prefix, upload_id) == 0
        assert manifest_digest(survivor.url, name, "v1") == sha256_of(manifest)
        assert httpx.head(f"{survivor.url}/v2/{name}/blobs/{digest}").status_code == 200
    finally:
        doomed.stop(kill=True)


def test_replicas_share_the_token_key_file(seaweed, prefix, tmp_path):
    """Token mode on a bucket: a token one replica issued works on the other, as both
    read the operator's key file (``--token-key``); nothing of the key is in the bucket."""
    need("htpasswd")
    htpasswd = tmp_path / "htpasswd"
    subprocess.run(["htpasswd", "-B", "-b", "-c", str(htpasswd), "alice", "pw"], check=True)
    key = tmp_path / "token.key"
    key.write_text(os.urandom(32).hex())
    key.chmod(0o600)
    args = [*seaweed.storage_args(prefix=prefix), "--htpasswd", str(htpasswd), "--auth", "token"]
    servers = [
        start_server(tmp_path / f"auth{n}", *args, "--token-key", str(key), env=seaweed.env)
        for n in (1, 2)
    ]
    try:
        scope = "repository:shared/key:pull,push"
        r = httpx.get(f"{servers[0].url}/token", params={"scope": scope}, auth=("alice", "pw"))
        assert r.status_code == 200, r.text
        headers = {"Authorization": f"Bearer {r.json()['token']}"}
        r = httpx.post(f"{servers[1].url}/v2/shared/key/blobs/uploads/", headers=headers)
        assert r.status_code == 202, r.text
        listed = keys(seaweed, prefix, "")
        assert listed and not [k for k in listed if "auth" in k or "key" in k.rsplit("/", 1)[1]]
        for server in servers:
            assert not (server.root / "auth").exists()  # no key of its own made
    finally:
        for server in servers:
            server.stop()


def test_catalog_pages_list_only_their_levels(seaweed, tmp_path):
    """The catalog on a bucket pages in distribution's order (component by component:
    ``a`` < ``a/0`` < ``a/b/c`` < ``a-b``), the same order and pages as on a directory,
    and a page lists the levels of its own names (plus the path to ``last``), not every
    object of every repository."""
    from dockyard.registry.server.storage import Storage

    names = ["a", "a/0", "a/b/c", "a-b", "a.c", "b", "b/x", "x/y", "z9"]
    config = ServerConfig(
        root=tmp_path,
        storage=f"s3://registry/{uuid.uuid4().hex[:12]}",
        s3_endpoint=seaweed.endpoint,
        s3_region="us-east-1",
    )
    os.environ.update({k: v for k, v in seaweed.env.items() if k.startswith("AWS_")})
    bucket = S3Storage.from_config(config)
    bucket.ensure()
    files = Storage(tmp_path / "files")
    for i, name in enumerate(names):
        for store in (bucket, files):
            store.link_blob(name, sha256_of(name.encode()))
            if i % 2:
                store.put_manifest(name, b"{}", "application/vnd.oci.image.index.v1+json", ("t",))
    expected = ["a", "a/0", "a/b/c", "a-b", "a.c", "b", "b/x", "x/y", "z9"]
    assert bucket.repositories() == files.repositories() == expected
    for n in (1, 2, 4):
        pages, last = [], None
        while True:
            got = bucket.repositories(last, n)
            assert got == files.repositories(last, n)
            if not got:
                break
            pages += got
            last = got[-1]
        assert pages == expected
    assert bucket.repositories("a/b", 2) == ["a/b/c", "a-b"]  # after a namespace
    assert bucket.repositories("x/../a", 1) == ["x/y"]  # junk is only a bound
    calls: list[str] = []
    bucket.bucket.client.meta.events.register(
        "provide-client-params.s3.ListObjectsV2", lambda params, **_: calls.append(params["Prefix"])
    )
    assert bucket.repositories("a-b", 2) == ["a.c", "b"]
    prefix = bucket.bucket.prefix
    assert sorted(calls) == sorted(
        f"{prefix}repos/{p}" for p in ("", "a-b/", "a.c/", "b/")
    )  # the top level, last's own, and the page's: never inside _layers/ or _manifests/


def test_a_blob_read_costs_one_head_per_object_it_checks(seaweed, tmp_path, monkeypatch):
    """A blob ``GET`` asks the store two ``HEAD``s (the repository's link, the blob with
    its size) and one ``GET``; a repository without the link costs one ``HEAD`` and a 404;
    a link whose blob is gone is a 404 too."""
    import warnings

    with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from dockyard.registry.server.app import create_app

    for key, value in seaweed.env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    config = ServerConfig(
        root=tmp_path,
        storage=f"s3://registry/{uuid.uuid4().hex[:12]}",
        s3_endpoint=seaweed.endpoint,
        s3_region="us-east-1",
    )
    data = os.urandom(1000)
    digest = sha256_of(data)
    with TestClient(create_app(config)) as client:
        r = client.post(f"/v2/counted/blobs/uploads/?digest={digest}", content=data)
        assert r.status_code == 201, r.text
        sent: list[str] = []
        client.app.storage.bucket.client.meta.events.register(
            "before-send.s3", lambda event_name, **_: sent.append(event_name.rsplit(".", 1)[1])
        )
        r = client.get(f"/v2/counted/blobs/{digest}")
        assert (r.status_code, r.content) == (200, data)
        assert sent == ["HeadObject", "HeadObject", "GetObject"]
        sent.clear()
        r = client.head(f"/v2/counted/blobs/{digest}")
        assert (r.status_code, r.headers["content-length"]) == (200, str(len(data)))
        assert sent == ["HeadObject", "HeadObject", "PutObject"]  # the PUT: touched now
        sent.clear()
        assert client.get(f"/v2/elsewhere/blobs/{digest}").status_code == 404
        assert sent == ["HeadObject"]
        client.app.storage.bucket.delete(S3Blobs.key(digest))
        assert client.get(f"/v2/counted/blobs/{digest}").status_code == 404
