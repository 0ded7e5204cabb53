"""RegistryClient against a real CNCF distribution registry, with skopeo as the oracle.

Faults (5xx, resets, corrupt bytes, 413) are injected by a transport that sits between
the client and the real registry and passes everything else through.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest

from dockyard.errors import DigestError, RegistryError
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.home import RawManifest
from dockyard.reference import parse
from dockyard.registry.client import (
    RegistryClient,
    RegistryDestination,
    RegistrySource,
    RetryPolicy,
)
from dockyard.transfer.copy import copy_image
from tests.conftest import need

pytestmark = pytest.mark.e2e

NO_WAIT = RetryPolicy(attempts=4, base_delay=0.0)


# -- a pass-through transport that records requests and injects faults ----------------


class _Truncated(httpx.SyncByteStream):
    """The real body, cut off by a connection reset after ``after`` bytes."""

    def __init__(self, inner: httpx.SyncByteStream, after: int):
        self._inner = inner
        self._after = after

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self._inner:
            if sent + len(chunk) >= self._after:
                yield chunk[: self._after - sent]
                raise httpx.ReadError("connection reset by peer (injected)")
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


@dataclass
class Seen:
    method: str
    path: str
    query: str
    status: int
    headers: httpx.Headers


@dataclass
class Faults(httpx.BaseTransport):
    """Forwards to the registry; the next requests matching a rule get its faults.

    Every request is recorded in ``seen`` (status 0 for a raised fault). A fault is a
    status code (answered without asking the registry, after reading the
    request body as a server would), an exception to raise, ``"truncate"`` (cut the
    real body after 1000 bytes) or ``"corrupt"`` (flip the real body's first byte).
    """

    inner: httpx.HTTPTransport = field(default_factory=httpx.HTTPTransport)
    rules: list[tuple[str, str, list[object]]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    def inject(self, method: str, path_part: str, *faults: object) -> None:
        self.rules.append((method, path_part, list(faults)))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault = None
        for method, part, faults in self.rules:
            if faults and request.method == method and part in request.url.path:
                fault = faults.pop(0)
                break
        if isinstance(fault, int):
            request.read()
            response = httpx.Response(fault, request=request)
        elif isinstance(fault, Exception):
            request.read()
            self._record(request, 0)
            raise fault
        else:
            if fault == "no-range":
                del request.headers["range"]
            response = self.inner.handle_request(request)
            if fault == "truncate":
                response = httpx.Response(
                    response.status_code,
                    headers=response.headers,
                    stream=_Truncated(response.stream, 1000),  # type: ignore[arg-type]
                )
            elif fault == "relative":
                location = httpx.URL(response.headers["location"])
                response.headers["location"] = location.raw_path.decode()
            elif fault == "corrupt":
                body = bytearray(response.read())
                body[0] ^= 0xFF
                response = httpx.Response(
                    response.status_code,
                    headers=response.headers,
                    stream=httpx.ByteStream(bytes(body)),
                )
        self._record(request, response.status_code)
        return response

    def _record(self, request: httpx.Request, status: int) -> None:
        url = request.url
        self.seen.append(
            Seen(request.method, url.path, url.query.decode(), status, request.headers)
        )

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for s in self.seen if s.method == method and path_part in s.path)


# -- the busybox image, read straight from umoci's layout ------------------------------


@dataclass
class LayoutImage:
    manifest: RawManifest
    digest: str
    blobs: list[Descriptor]
    root: Path

    def path(self, desc: Descriptor) -> Path:
        return self.root / "blobs" / "sha256" / desc.digest.split(":", 1)[1]

    def open(self, desc: Descriptor) -> AbstractContextManager[BinaryIO]:
        return self.path(desc).open("rb")


@pytest.fixture(scope="module")
def busybox(busybox_layout: Path) -> LayoutImage:
    index = json.loads((busybox_layout / "index.json").read_text())
    entry = Descriptor.from_dict(index["manifests"][0])
    data = (busybox_layout / "blobs" / "sha256" / entry.digest.split(":", 1)[1]).read_bytes()
    doc = json.loads(data)
    blobs = [Descriptor.from_dict(d) for d in [doc["config"], *doc["layers"]]]
    return LayoutImage(RawManifest(data, entry.media_type), entry.digest, blobs, busybox_layout)


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


def push(client: RegistryClient, repo: str, tag: str, image: LayoutImage) -> None:
    dest = RegistryDestination(client, parse(f"{client.host}/{repo}:{tag}"))
    for desc in image.blobs:
        if not dest.has_blob(desc):
            with image.open(desc) as stream:
                dest.put_blob(desc, stream)
    dest.put_manifest(image.manifest, root=True)
    dest.commit()


def skopeo(*args: str) -> bytes:
    need("skopeo")
    return subprocess.run(["skopeo", *args], check=True, capture_output=True).stdout


def blob(data: bytes) -> Descriptor:
    return Descriptor.of_bytes("application/octet-stream", data)


# -- tests -----------------------------------------------------------------------------


def test_push_is_byte_identical_for_skopeo(docker_registry, busybox):
    client = RegistryClient(docker_registry.host)
    repo = unique("push")
    push(client, repo, "v1", busybox)

    url = f"docker://{docker_registry.host}/{repo}:v1"
    assert skopeo("inspect", "--raw", "--tls-verify=false", url) == busybox.manifest.data
    assert json.loads(skopeo("inspect", "--tls-verify=false", url))["Digest"] == busybox.digest
    for desc in busybox.blobs:
        assert client.has_blob(repo, desc.digest)
        assert client.stat_blob(repo, desc.digest) == desc.size
    assert client.stat_blob(unique("empty"), busybox.blobs[0].digest) is None


def test_pull_back_blobs_and_manifest(docker_registry, busybox):
    client = RegistryClient(docker_registry.host)
    repo = unique("pull")
    push(client, repo, "v1", busybox)

    source = RegistrySource(client, parse(f"{docker_registry.host}/{repo}:v1"))
    root = source.root_manifest()
    assert (root.data, root.media_type, root.digest) == (
        busybox.manifest.data,
        mt.OCI_MANIFEST,
        busybox.digest,
    )
    assert source.manifest(busybox.digest).data == busybox.manifest.data
    for desc in busybox.blobs:
        with source.open_blob(desc) as stream:
            h = hashlib.sha256()
            while chunk := stream.read(64 << 10):
                h.update(chunk)
        assert f"sha256:{h.hexdigest()}" == desc.digest
        assert busybox.path(desc).stat().st_size == desc.size


def test_manifest_bytes_are_kept_exactly(docker_registry, busybox):
    """A manifest whose JSON we would never write (indent, key order) comes back as is."""
    client = RegistryClient(docker_registry.host)
    repo = unique("bytes")
    push(client, repo, "base", busybox)
    doc = json.loads(busybox.manifest.data)
    odd = json.dumps(dict(reversed(list(doc.items()))), indent=3).encode() + b"\n"
    raw = RawManifest(odd, mt.OCI_MANIFEST)
    digest = client.put_manifest(repo, "odd", raw)
    assert digest == "sha256:" + hashlib.sha256(odd).hexdigest()

    by_tag = client.get_manifest(repo, "odd")
    by_digest = client.get_manifest(repo, digest)
    assert by_tag.data == by_digest.data == odd
    assert by_tag.digest == by_digest.digest == digest
    assert client.head_manifest(repo, "odd") == Descriptor(mt.OCI_MANIFEST, digest, len(odd))
    assert client.head_manifest(repo, "missing") is None
    assert (
        skopeo(
            "inspect", "--raw", "--tls-verify=false", f"docker://{docker_registry.host}/{repo}:odd"
        )
        == odd
    )

    client.delete_manifest(repo, digest)
    assert client.head_manifest(repo, digest) is None


def test_errors_name_registry_what_status_and_code(docker_registry):
    client = RegistryClient(docker_registry.host)
    repo = unique("errors")
    with pytest.raises(RegistryError) as err:
        client.get_manifest(repo, "nope")
    assert str(err.value) == (
        f"registry {docker_registry.host}: manifest unknown: {repo}:nope (404 MANIFEST_UNKNOWN)"
    )
    assert (err.value.status, err.value.code) == (404, "MANIFEST_UNKNOWN")


def test_listings_follow_link_pagination(docker_registry, busybox):
    """distribution 2.8 pages ``_catalog`` with ``Link`` headers; it ignores ``n`` on tag
    lists (which go through the same pagination code) and sends them whole."""
    faults = Faults()
    client = RegistryClient(docker_registry.host, transport=faults)
    repo = unique("tags")
    push(client, repo, "t0", busybox)
    for n in range(1, 5):
        client.put_manifest(repo, f"t{n}", busybox.manifest)
    push(client, f"{repo}-b", "x", busybox)

    assert sorted(client.list_tags(repo, page_size=1)) == ["t0", "t1", "t2", "t3", "t4"]
    assert sorted(client.list_tags(repo)) == ["t0", "t1", "t2", "t3", "t4"]

    everything = client.catalog()
    assert {repo, f"{repo}-b"} <= set(everything)
    before = faults.count("GET", "/_catalog")
    assert client.catalog(page_size=1) == everything
    pages = [s for s in faults.seen if s.path.endswith("/_catalog")][before:]
    assert len(pages) >= len(everything)
    assert pages[0].query == "n=1"
    assert all("last=" in p.query and "n=1" in p.query for p in pages[1:])


def test_cross_repo_mount_uploads_nothing(docker_registry, busybox):
    faults = Faults()
    client = RegistryClient(docker_registry.host, transport=faults)
    first, second = unique("mount"), unique("mount")
    push(client, first, "v1", busybox)
    uploads_before = faults.count("PUT", "/blobs/uploads/")

    dest = RegistryDestination(client, parse(f"{client.host}/{second}:v1"), mount_from=first)
    for desc in busybox.blobs:
        assert not dest.has_blob(desc)
        with busybox.open(desc) as stream:
            dest.put_blob(desc, stream)
        assert dest.has_blob(desc)
    dest.put_manifest(busybox.manifest, root=True)

    assert dest.mounted == busybox.blobs
    mounts = [s for s in faults.seen if s.method == "POST" and "mount=" in s.query]
    assert [s.status for s in mounts] == [201] * len(busybox.blobs)
    assert faults.count("PUT", "/blobs/uploads/") == uploads_before
    assert faults.count("PATCH", "/blobs/uploads/") == 0
    assert client.get_manifest(second, "v1").digest == busybox.digest

    # A repository without the blob: 202, and the session opened instead is cancelled.
    assert not client.mount_blob(unique("mount"), busybox.blobs[0].digest, unique("empty"))
    assert faults.seen[-1].method == "DELETE"


def test_copy_image_between_repositories_mounts(docker_registry, busybox):
    """The homes work with the real transfer code, registry to registry."""
    client = RegistryClient(docker_registry.host)
    first, second = unique("copy"), unique("copy")
    push(client, first, "v1", busybox)
    source = RegistrySource(client, parse(f"{client.host}/{first}:v1"))
    dest = RegistryDestination(client, parse(f"{client.host}/{second}:v2"), mount_from=first)
    result = copy_image(source, dest)
    assert result.digest == busybox.digest
    assert len(dest.mounted) == len(busybox.blobs)
    assert client.get_manifest(second, "v2").data == busybox.manifest.data


def test_corrupt_blob_download_raises_digest_error(docker_registry, busybox):
    faults = Faults()
    client = RegistryClient(docker_registry.host, transport=faults)
    repo = unique("corrupt")
    push(client, repo, "v1", busybox)
    layer = busybox.blobs[-1]
    faults.inject("GET", f"/blobs/{layer.digest}", "corrupt")
    with pytest.raises(DigestError, match=layer.digest), client.open_blob(repo, layer) as stream:
        while stream.read(1 << 16):
            pass


def test_download_resumes_after_reset(docker_registry, busybox):
    faults = Faults()
    client = RegistryClient(docker_registry.host, transport=faults, retry=NO_WAIT)
    repo = unique("resume")
    push(client, repo, "v1", busybox)
    layer = max(busybox.blobs, key=lambda d: d.size)
    faults.inject("GET", f"/blobs/{layer.digest}", "truncate", "truncate")
    with client.open_blob(repo, layer) as stream:
        data = stream.read()
    assert data == busybox.path(layer).read_bytes()
    gets = [s for s in faults.seen if s.method == "GET" and layer.digest in s.path]
    assert [s.headers.get("range") for s in gets] == [None, "bytes=1000-", "bytes=2000-"]
    assert [s.status for s in gets] == [200, 206, 206]

    # A server that ignores Range sends it all again; the bytes we had are skipped.
    faults.inject("GET", f"/blobs/{layer.digest}", "truncate", "no-range")
    with client.open_blob(repo, layer) as stream:
        assert stream.read() == busybox.path(layer).read_bytes()
    assert [s.status for s in faults.seen[-2:]] == [200, 200]


def test_5xx_and_resets_are_retried(docker_registry, busybox):
    faults = Faults()
    client = RegistryClient(docker_registry.host, transport=faults, retry=NO_WAIT)
    repo = unique("retry")
    faults.inject("HEAD", "/blobs/", 500, httpx.ReadTimeout("injected"))
    faults.inject("POST", "/blobs/uploads/", 503, 429)
    faults.inject("PUT", "/manifests/", 502)
    faults.inject("GET", "/manifests/", httpx.RemoteProtocolError("injected"), 504)
    push(client, repo, "v1", busybox)
    assert client.get_manifest(repo, "v1").data == busybox.manifest.data
    assert all(not faults for _, _, faults in faults.rules)  # every fault was met

    # 501 and 4xx are not retried.
    faults.inject("GET", "/manifests/", 501)
    with pytest.raises(RegistryError) as err:
        client.get_manifest(repo, "v1")
    assert err.value.status == 501
    assert faults.seen[-1].status == 501 and faults.count("GET", "/manifests/") == 4


def test_upload_restarts_with_reopened_stream(docker_registry):
    faults = Faults()
    client = RegistryClient(docker_registry.host, transport=faults, retry=NO_WAIT)
    repo = unique("restart")
    data = uuid.uuid4().bytes * 4096
    desc = blob(data)
    faults.inject("PUT", "/blobs/uploads/", 500, httpx.WriteError("injected reset"))
    opened = []

    def reopen() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(data)

    dest = RegistryDestination(client, parse(f"{client.host}/{repo}:v1"))
    dest.put_blob(desc, io.BytesIO(data), reopen=reopen)
    assert len(opened) == 2  # the given stream, then two re-opens
    assert faults.count("POST", "/blobs/uploads/") == 3  # a fresh session each time
    with client.open_blob(repo, desc) as stream:
        assert stream.read() == data

    # Without a way to re-open a consumed stream, the registry's error comes out.
    other = blob(data + b"!")
    faults.inject("PUT", "/blobs/uploads/", 503)
    with pytest.raises(RegistryError) as err:
        dest.put_blob(other, io.BytesIO(data + b"!"))
    assert err.value.status == 503
    assert not client.has_blob(repo, other.digest)


def test_wrong_bytes_are_never_committed(docker_registry):
    client = RegistryClient(docker_registry.host)
    repo = unique("wrong")
    data = b"x" * 300_000
    claimed = Descriptor("application/octet-stream", blob(b"y" * 300_000).digest, len(data))
    with pytest.raises(DigestError, match=claimed.digest):
        client.upload_blob(repo, claimed, lambda: io.BytesIO(data))
    assert not client.has_blob(repo, claimed.digest)
    assert not client.has_blob(repo, blob(data).digest)


def test_chunked_upload_and_fallback_after_413(docker_registry):
    repo = unique("chunks")
    data = uuid.uuid4().bytes * 1000
    desc = blob(data)
    chunked = Faults()
    client = RegistryClient(docker_registry.host, transport=chunked, chunk_size=4096)
    chunked.inject("POST", "/blobs/uploads/", "relative")
    chunked.inject("PATCH", "/blobs/uploads/", "relative", "relative")
    assert client.upload_blob(repo, desc, lambda: io.BytesIO(data)) is False
    assert chunked.count("PATCH", "/blobs/uploads/") == 4  # 16000 bytes in 4096-byte chunks
    assert all(not faults for _, _, faults in chunked.rules)
    with client.open_blob(repo, desc) as stream:
        assert stream.read() == data

    faults = Faults()
    client = RegistryClient(docker_registry.host, transport=faults)
    faults.inject("PUT", "/blobs/uploads/", 413)
    desc2 = blob(data[::-1])
    client.upload_blob(repo, desc2, lambda: io.BytesIO(data[::-1]))
    assert faults.count("PATCH", "/blobs/uploads/") == 1  # under the default chunk size
    assert client.has_blob(repo, desc2.digest)


def test_tls_verify_true_on_a_plain_http_registry_fails_fast(docker_registry):
    client = RegistryClient(docker_registry.host, tls_verify=True, retry=NO_WAIT)
    assert client.base_url == f"https://{docker_registry.host}"
    with pytest.raises(RegistryError, match=f"registry {docker_registry.host}: TLS failure"):
        client.get_manifest("any/thing", "latest")
