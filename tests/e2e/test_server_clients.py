"""The registry server with clients nobody here wrote: skopeo, podman, buildah, and
dockyard's own client; docker-registry as the other registry for copies."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.conftest import need
from tests.support.registry_server import Containers, copy, manifest_digest, skopeo, start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("server"))
    yield s
    s.stop()


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:8]}"


def test_skopeo_push_inspect_pull(server, busybox_layout, tmp_path):
    name = unique("skopeo")
    copy(f"oci:{busybox_layout}:latest", f"docker://{server.host}/{name}:1")
    inspected = json.loads(
        skopeo("inspect", "--tls-verify=false", f"docker://{server.host}/{name}:1").stdout
    )
    assert inspected["Name"] == f"{server.host}/{name}"
    assert inspected["Digest"] == manifest_digest(server.url, name, "1")
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{server.host}/{name}:1")
    assert json.loads(raw.stdout)["schemaVersion"] == 2
    head = httpx.head(f"{server.url}/v2/{name}/manifests/1")
    assert head.headers["content-type"] == "application/vnd.oci.image.manifest.v1+json"
    tags = json.loads(
        skopeo("list-tags", "--tls-verify=false", f"docker://{server.host}/{name}").stdout
    )
    assert tags["Tags"] == ["1"]
    copy(f"docker://{server.host}/{name}:1", f"oci:{tmp_path}/out:pulled")
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == inspected["Digest"]


def test_skopeo_docker_format_and_copy_between_registries(
    server, busybox_ref, docker_registry, tmp_path
):
    """docker-registry -> ours -> docker-registry keeps the digest (Docker media types)."""
    name = unique("copied")
    copy(f"docker://{busybox_ref}", f"docker://{server.host}/{name}:v2s2", "--format", "v2s2")
    ours = manifest_digest(server.url, name, "v2s2")
    raw = httpx.get(
        f"{server.url}/v2/{name}/manifests/v2s2",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert raw.headers["content-type"] == "application/vnd.docker.distribution.manifest.v2+json"
    back = f"{docker_registry.host}/{unique('back')}"
    copy(f"docker://{server.host}/{name}:v2s2", f"docker://{back}:1")
    assert manifest_digest(docker_registry.url, back.split("/", 1)[1], "1") == ours
    # and an unchanged copy from ours into ours is a mount
    copy(f"docker://{server.host}/{name}:v2s2", f"docker://{server.host}/{name}-again:1")
    assert manifest_digest(server.url, f"{name}-again", "1") == ours


def test_skopeo_multi_arch_index(server, busybox_layout, tmp_path):
    """An index with two platforms pushed with --all and read back whole."""
    name = unique("multi")
    copy(f"oci:{busybox_layout}:latest", f"docker://{server.host}/{name}:amd64")
    amd = manifest_digest(server.url, name, "amd64")
    size = len(httpx.get(f"{server.url}/v2/{name}/manifests/{amd}").content)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": amd,
                "size": size,
                "platform": {"os": "linux", "architecture": "amd64"},
            },
        ],
    }
    r = httpx.put(
        f"{server.url}/v2/{name}/manifests/multi",
        content=json.dumps(index),
        headers={"Content-Type": index["mediaType"]},
    )
    assert r.status_code == 201
    copy(f"docker://{server.host}/{name}:multi", f"oci:{tmp_path}/all:multi", "--all")
    blobs = tmp_path / "all" / "blobs" / "sha256"
    assert (blobs / amd.split(":")[1]).exists()


def test_podman_pull_push(server, busybox_layout):
    name = unique("podman")
    copy(f"oci:{busybox_layout}:latest", f"docker://{server.host}/{name}:1")
    podman = Containers("podman")
    try:
        podman("pull", "--tls-verify=false", f"{server.host}/{name}:1")
        podman("tag", f"{server.host}/{name}:1", f"{server.host}/{name}:pushed")
        podman("push", "--tls-verify=false", f"{server.host}/{name}:pushed")
    finally:
        podman.close()
    r = httpx.get(f"{server.url}/v2/{name}/tags/list")
    assert r.json()["tags"] == ["1", "pushed"]
    assert manifest_digest(server.url, name, "pushed")


def test_buildah_push(server, busybox_layout):
    name = unique("buildah")
    copy(f"oci:{busybox_layout}:latest", f"docker://{server.host}/{name}:src")
    buildah = Containers("buildah")
    try:
        buildah("pull", "--tls-verify=false", f"{server.host}/{name}:src")
        buildah(
            "push",
            "--tls-verify=false",
            f"{server.host}/{name}:src",
            f"docker://{server.host}/{name}:by-buildah",
        )
    finally:
        buildah.close()
    skopeo("inspect", "--tls-verify=false", f"docker://{server.host}/{name}:by-buildah")


def test_dockyard_client_push_pull(server, busybox_ref, dockyard):
    name = f"{server.host}/{unique('dockyard')}:1"
    dockyard("pull", "--progress=quiet", busybox_ref)
    dockyard("tag", busybox_ref, name)
    dockyard("push", "--progress=quiet", name)
    dockyard("rmi", name)
    dockyard("pull", "--progress=quiet", name)
    out = dockyard("images").stdout.decode()
    assert name.rsplit(":", 1)[0] in out
    # blob and manifest plumbing against our server too
    need("skopeo")
    skopeo("inspect", "--tls-verify=false", f"docker://{name}")
