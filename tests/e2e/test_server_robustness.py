"""Concurrent pushes of one blob, clients killed mid-upload, the server killed mid-write,
and garbage collection racing pushes: no corrupt blob, no lost tag."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import need
from tests.support.registry_server import copy, manifest_digest, run, start_server
from tests.support.registry_server import sha256_of as sha
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def blob_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "blobs" / "sha256").iterdir()}


def assert_store_sound(root: Path) -> None:
    """Every blob file holds exactly the content its name says; no temp files remain."""
    for name, data in blob_files(root).items():
        assert hashlib.sha256(data).hexdigest() == name, f"corrupt blob {name}"
    assert [p for p in (root / "blobs" / "sha256").iterdir() if p.name.startswith(".")] == []


def dockyard_cli(*args: str) -> subprocess.CompletedProcess:
    import sys

    return run(sys.executable, "-m", "dockyard.cli.main", *args)


def push_manifest(url: str, name: str, tag: str, layers: list[bytes]) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    with httpx.Client(base_url=url, timeout=60) as c:
        for blob in (config, *layers):
            r = c.post(f"/v2/{name}/blobs/uploads/?digest={sha(blob)}", content=blob)
            assert r.status_code == 201, r.text
        doc = json.dumps(
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
                        "digest": sha(b),
                        "size": len(b),
                    }
                    for b in layers
                ],
            }
        ).encode()
        r = c.put(
            f"/v2/{name}/manifests/{tag}", content=doc, headers={"Content-Type": OCI_MANIFEST}
        )
        assert r.status_code == 201, r.text
    return sha(doc)


@pytest.fixture
def server(tmp_path):
    s = start_server(tmp_path / "server")
    yield s
    s.stop()


def test_two_clients_push_the_same_blob_at_once(server):
    data = os.urandom(24 << 20)
    digest = sha(data)
    barrier = threading.Barrier(4)

    def chunked(repo: str) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            location = c.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
            barrier.wait()
            step = 1 << 20
            for offset in range(0, len(data), step):
                chunk = data[offset : offset + step]
                r = c.patch(
                    location,
                    content=chunk,
                    headers={"Content-Range": f"{offset}-{offset + len(chunk) - 1}"},
                )
                assert r.status_code == 202
                location = r.headers["location"]
            return c.put(f"{location}?digest={digest}").status_code

    def monolithic(repo: str) -> int:
        barrier.wait()
        r = httpx.post(
            f"{server.url}/v2/{repo}/blobs/uploads/?digest={digest}", content=data, timeout=60
        )
        return r.status_code

    with ThreadPoolExecutor(4) as pool:
        results = [
            pool.submit(f, repo)
            for f, repo in (
                (chunked, "same/a"),
                (chunked, "same/b"),
                (monolithic, "same/c"),
                (monolithic, "same/a"),
            )
        ]
        assert [r.result() for r in results] == [201, 201, 201, 201]
    for repo in ("same/a", "same/b", "same/c"):
        r = httpx.get(f"{server.url}/v2/{repo}/blobs/{digest}")
        assert r.status_code == 200 and sha(r.content) == digest
    assert_store_sound(server.root)
    assert list((server.root / "uploads").iterdir()) == []


def test_skopeo_pushes_of_one_image_race(server, busybox_layout):
    with ThreadPoolExecutor(3) as pool:
        jobs = [
            pool.submit(
                copy, f"oci:{busybox_layout}:latest", f"docker://{server.host}/race/img:{i}"
            )
            for i in range(3)
        ]
        for job in jobs:
            job.result()
    digests = {manifest_digest(server.url, "race/img", str(i)) for i in range(3)}
    assert len(digests) == 1
    assert_store_sound(server.root)


def upload_sizes(root: Path) -> list[int]:
    """The bytes each upload in progress has on disk (white-box: how far the server got)."""
    sizes = []
    for data in (root / "uploads").glob("*/data"):
        with contextlib.suppress(FileNotFoundError):  # finished since it was listed
            sizes.append(data.stat().st_size)
    return sizes


def _send_partial(host: str, request_head: str, body: bytes, root: Path) -> None:
    """Send a request head and part of its body, then drop the connection (killed client)
    once the server has written some of the body (1 MiB, a write batch) to an upload."""
    hostname, port = host.split(":")
    with socket.create_connection((hostname, int(port))) as s:
        s.sendall(request_head.encode() + body)
        wait_until(
            lambda: any(size >= 1 << 20 for size in upload_sizes(root)),
            "the server to write part of the body",
        )
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_client_killed_mid_upload(server):
    data = os.urandom(8 << 20)
    digest = sha(data)
    # a monolithic upload cut off: nothing is kept
    head = (
        f"POST /v2/killed/mono/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
        f"Host: {server.host}\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    _send_partial(server.host, head, data[: 3 << 20], server.root)
    wait_until(lambda: list((server.root / "uploads").iterdir()) == [], "the cut-off upload to go")
    assert httpx.head(f"{server.url}/v2/killed/mono/blobs/{digest}").status_code == 404
    # a chunk cut off: the session keeps what arrived and the client resumes from there
    location = httpx.post(f"{server.url}/v2/killed/chunk/blobs/uploads/").headers["location"]
    head = (
        f"PATCH {location} HTTP/1.1\r\nHost: {server.host}\r\n"
        f"Content-Length: {len(data)}\r\nContent-Range: 0-{len(data) - 1}\r\n\r\n"
    )
    _send_partial(server.host, head, data[: 5 << 20], server.root)
    status = httpx.get(f"{server.url}{location}", timeout=60)  # after the cut-off PATCH
    assert status.status_code == 204
    have = int(status.headers["range"].split("-")[1]) + 1
    assert 0 < have <= 5 << 20
    r = httpx.patch(
        f"{server.url}{location}",
        content=data[have:],
        headers={"Content-Range": f"{have}-{len(data) - 1}"},
    )
    assert r.status_code == 202
    assert httpx.put(f"{server.url}{location}?digest={digest}").status_code == 201
    assert sha(httpx.get(f"{server.url}/v2/killed/chunk/blobs/{digest}").content) == digest
    assert httpx.get(f"{server.url}/v2/").status_code == 200
    assert_store_sound(server.root)


def test_skopeo_killed_mid_push_then_push_again(server, tmp_path):
    need("skopeo")
    big = tmp_path / "big"
    big.mkdir()
    (big / "data").write_bytes(os.urandom(40 << 20))
    layout = tmp_path / "layout"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:big")
    run("umoci", "insert", "--image", f"{layout}:big", str(big), "/big")
    proc = subprocess.Popen(
        [
            "skopeo",
            "copy",
            "-q",
            "--dest-tls-verify=false",
            f"oci:{layout}:big",
            f"docker://{server.host}/killed/skopeo:1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(  # killed mid-push: once a blob's bytes are arriving (unless all came)
        lambda: any(upload_sizes(server.root)) or proc.poll() is not None,
        "skopeo to upload some of the image",
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    copy(f"oci:{layout}:big", f"docker://{server.host}/killed/skopeo:1")
    copy(f"docker://{server.host}/killed/skopeo:1", f"oci:{tmp_path}/back:1")
    assert_store_sound(server.root)


def test_server_killed_mid_write(tmp_path):
    """SIGKILL the server during an upload and during a storm of tag updates: after a
    restart the upload resumes, every blob is sound and every acknowledged tag is there."""
    server = start_server(tmp_path / "server")
    try:
        data = os.urandom(16 << 20)
        digest = sha(data)
        location = httpx.post(f"{server.url}/v2/crash/up/blobs/uploads/").headers["location"]
        httpx.patch(f"{server.url}{location}", content=data[: 4 << 20])
        stop_sending = threading.Event()

        def slow_body():
            for offset in range(4 << 20, len(data), 256 << 10):
                if stop_sending.is_set():
                    return
                yield data[offset : offset + (256 << 10)]
                time.sleep(0.02)

        def slow_patch():
            with contextlib.suppress(httpx.HTTPError):
                httpx.patch(f"{server.url}{location}", content=slow_body(), timeout=30)

        acknowledged: dict[str, str] = {}
        storming = threading.Event()  # a tag is acknowledged, the storm goes on
        layer = os.urandom(1 << 20)

        def tag_storm():
            i = 0
            while not stop_sending.is_set():
                try:
                    acknowledged[f"t{i % 5}"] = push_manifest(
                        server.url, "crash/tags", f"t{i % 5}", [layer]
                    )
                except (httpx.HTTPError, AssertionError):
                    return
                storming.set()
                i += 1

        threads = [threading.Thread(target=slow_patch), threading.Thread(target=tag_storm)]
        for t in threads:
            t.start()
        assert storming.wait(60), "no manifest push finished"
        wait_until(
            lambda: max(upload_sizes(server.root), default=0) > 4 << 20, "the slow chunk to arrive"
        )
        server.stop(kill=True)
        stop_sending.set()
        for t in threads:
            t.join()

        server.start()
        assert_store_sound(server.root)
        for tag, _manifest in acknowledged.items():
            got = manifest_digest(server.url, "crash/tags", tag)
            assert got  # the tag is there and points at a manifest we can serve
            raw = httpx.get(f"{server.url}/v2/crash/tags/manifests/{got}").content
            assert sha(raw) == got
        status = httpx.get(f"{server.url}{location}")
        assert status.status_code == 204
        have = int(status.headers["range"].split("-")[1]) + 1
        assert 4 << 20 <= have < len(data)
        r = httpx.patch(
            f"{server.url}{location}",
            content=data[have:],
            headers={"Content-Range": f"{have}-{len(data) - 1}"},
        )
        assert r.status_code == 202
        assert httpx.put(f"{server.url}{location}?digest={digest}").status_code == 201
        assert sha(httpx.get(f"{server.url}/v2/crash/up/blobs/{digest}").content) == digest
    finally:
        server.stop()


def test_gc_removes_unreferenced_keeps_the_rest(server, busybox_layout):
    copy(f"oci:{busybox_layout}:latest", f"docker://{server.host}/gc/kept:1")
    orphan = os.urandom(1 << 20)
    r = httpx.post(f"{server.url}/v2/gc/orphan/blobs/uploads/?digest={sha(orphan)}", content=orphan)
    assert r.status_code == 201
    # an upload in progress, not finished
    location = httpx.post(f"{server.url}/v2/gc/progress/blobs/uploads/").headers["location"]
    httpx.patch(f"{server.url}{location}", content=b"half of something")
    before = set(blob_files(server.root))

    out = dockyard_cli("registry", "gc", "--root", str(server.root), "--grace", "0", "--dry-run")
    assert f"would delete blob {sha(orphan)}" in out.stdout
    assert set(blob_files(server.root)) == before

    # within the grace period (default one hour) the young orphan survives
    dockyard_cli("registry", "gc", "--root", str(server.root))
    assert sha(orphan)[7:] in blob_files(server.root)

    out = dockyard_cli("registry", "gc", "--root", str(server.root), "--grace", "0")
    assert f"deleting blob {sha(orphan)}" in out.stdout
    after = set(blob_files(server.root))
    assert after == before - {sha(orphan)[7:]}
    assert httpx.head(f"{server.url}/v2/gc/orphan/blobs/{sha(orphan)}").status_code == 404
    copy(f"docker://{server.host}/gc/kept:1", f"oci:{server.root.parent}/pulled:1")
    # the upload in progress is untouched and can still finish
    data = b"half of something" + b" and the rest"
    httpx.patch(f"{server.url}{location}", content=b" and the rest")
    assert httpx.put(f"{server.url}{location}?digest={sha(data)}").status_code == 201


def test_gc_while_pushing(server):
    """gc in a loop while manifests and blobs are pushed: every push succeeds, every
    pushed image stays complete."""
    stop_gc = threading.Event()
    runs = []

    def gc_loop():
        while not stop_gc.is_set():
            dockyard_cli("registry", "gc", "--root", str(server.root))
            runs.append(1)

    thread = threading.Thread(target=gc_loop)
    thread.start()
    try:
        pushed = {}
        for i in range(12):
            pushed[f"v{i}"] = push_manifest(server.url, "gc/busy", f"v{i}", [os.urandom(300_000)])
    finally:
        stop_gc.set()
        thread.join()
    assert runs
    dockyard_cli("registry", "gc", "--root", str(server.root))
    for tag, digest in pushed.items():
        assert manifest_digest(server.url, "gc/busy", tag) == digest
        raw = json.loads(httpx.get(f"{server.url}/v2/gc/busy/manifests/{digest}").content)
        for desc in [raw["config"], *raw["layers"]]:
            assert httpx.head(f"{server.url}/v2/gc/busy/blobs/{desc['digest']}").status_code == 200
