"""Images loaded from a docker-archive (Docker media types, plain-tar layers), written by
``dockyard copy``/``save``/``push`` and opened by the peers: skopeo, umoci, podman and
buildah by tag from an OCI layout or archive, and a registry's compressed layers."""

from __future__ import annotations

import json
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from dockyard.oci import mediatypes as mt
from tests.conftest import need

pytestmark = pytest.mark.e2e

NAME = "example.com/peers/busybox:1"


def run(*args: str | Path) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert done.returncode == 0, f"{args[0]} failed: {done.stderr}"
    return done.stdout


def skopeo_raw(location: str) -> dict:
    need("skopeo")
    return json.loads(run("skopeo", "inspect", "--raw", "--tls-verify=false", location))


@pytest.fixture
def loaded(dockyard, busybox_layout, tmp_path) -> str:
    """The busybox fixture saved as a docker-archive by skopeo, loaded into the store."""
    need("skopeo")
    archive = tmp_path / "docker.tar"
    run("skopeo", "copy", "-q", f"oci:{busybox_layout}:latest", f"docker-archive:{archive}:{NAME}")
    dockyard("load", "-i", str(archive))
    assert json.loads(dockyard("inspect", NAME).stdout)["MediaType"] == mt.DOCKER_MANIFEST
    return NAME


@pytest.fixture
def storage(tmp_path):
    """``--root``/``--runroot`` of a throwaway containers-storage (podman, buildah)."""
    with tempfile.TemporaryDirectory(prefix="dy-peers-") as runroot:  # short: socket paths
        yield [
            "--root", str(tmp_path / "storage"),
            "--runroot", runroot,
            "--storage-driver", "vfs",
        ]  # fmt: skip


def busybox_unpacked_by_umoci(location: str, into: Path, busybox_rootfs: Path) -> None:
    need("umoci")
    run("umoci", "raw", "unpack", "--image", location, into)
    assert (into / "bin/busybox").read_bytes() == (busybox_rootfs / "bin/busybox").read_bytes()


def test_copy_to_a_layout_opens_by_tag_in_skopeo_umoci_podman_buildah(
    dockyard, loaded, storage, busybox_rootfs, tmp_path
):
    layout = tmp_path / "layout"
    dockyard("copy", loaded, f"oci:{layout}:v1")
    assert skopeo_raw(f"oci:{layout}:v1")["mediaType"] == mt.OCI_MANIFEST
    busybox_unpacked_by_umoci(f"{layout}:v1", tmp_path / "umoci", busybox_rootfs)
    need("podman", "buildah")
    podman = ["podman", *storage, "--events-backend", "none", "--cgroup-manager", "cgroupfs"]
    run(*podman, "pull", "-q", f"oci:{layout}:v1")
    container = run("buildah", *storage, "from", "-q", f"oci:{layout}:v1").strip()
    mounted = Path(run("buildah", *storage, "mount", container).strip())
    try:
        assert (mounted / "bin/busybox").read_bytes() == (
            busybox_rootfs / "bin/busybox"
        ).read_bytes()
    finally:
        run("buildah", *storage, "rm", container)
    assert sorted(p.name for p in layout.iterdir()) == ["blobs", "index.json", "oci-layout"]


def test_save_oci_archive_opens_by_tag_in_skopeo_and_podman(dockyard, loaded, storage, tmp_path):
    archive = tmp_path / "oci.tar"
    dockyard("save", "--format", "oci-archive", "-o", str(archive), loaded)
    manifest = skopeo_raw(f"oci-archive:{archive}:{loaded}")
    assert manifest["mediaType"] == mt.OCI_MANIFEST
    assert manifest["config"]["mediaType"] == mt.OCI_CONFIG
    need("podman")
    podman = ["podman", *storage, "--events-backend", "none", "--cgroup-manager", "cgroupfs"]
    assert loaded in run(*podman, "load", "-i", archive)


def test_preserve_digests_keeps_the_docker_manifest_or_fails_clearly(dockyard, loaded, tmp_path):
    digest = json.loads(dockyard("inspect", loaded).stdout)["Digest"]
    layout = tmp_path / "kept"
    out = dockyard("copy", "--preserve-digests", loaded, f"oci:{layout}:v1").stdout.decode()
    assert digest in out
    [entry] = json.loads((layout / "index.json").read_text())["manifests"]
    assert (entry["mediaType"], entry["digest"]) == (mt.DOCKER_MANIFEST, digest)
    failed = dockyard(
        "copy", "--preserve-digests", loaded, f"docker-archive:{tmp_path / 'd.tar'}", check=False
    )
    assert failed.returncode != 0
    assert b"digests cannot be preserved" in failed.stderr and b"Traceback" not in failed.stderr
    assert not (tmp_path / "d.tar").exists()


def layer_heads(registry, ref: str) -> list[tuple[str, bytes]]:
    """Each layer's media type and first bytes, as the registry serves them."""
    manifest = skopeo_raw(f"docker://{ref}")
    repository = ref.split("/", 1)[1].rsplit(":", 1)[0]
    heads = []
    for layer in manifest["layers"]:
        url = f"{registry.url}/v2/{repository}/blobs/{layer['digest']}"
        with subprocess.Popen(["curl", "-fsSL", url], stdout=subprocess.PIPE) as curl:
            head = curl.stdout.read(4)
            curl.stdout.read()
        heads.append((layer["mediaType"], head))
    return heads


def test_push_compresses_plain_tar_layers(dockyard, loaded, docker_registry):
    target = f"{docker_registry.host}/t{uuid.uuid4().hex[:8]}/bb:gz"
    dockyard("push", "--progress=quiet", loaded, target)
    assert layer_heads(docker_registry, target) == [(mt.DOCKER_LAYER_GZIP, b"\x1f\x8b\x08\x00")]
    kept = f"{docker_registry.host}/t{uuid.uuid4().hex[:8]}/bb:kept"
    dockyard("push", "--progress=quiet", "--preserve-digests", loaded, kept)
    [(media_type, _)] = layer_heads(docker_registry, kept)
    assert media_type == mt.DOCKER_LAYER


def test_compression_format_zstd_makes_an_oci_image_skopeo_reads(
    dockyard, loaded, docker_registry, tmp_path
):
    target = f"{docker_registry.host}/t{uuid.uuid4().hex[:8]}/bb:zstd"
    dockyard("push", "--progress=quiet", "--compression-format", "zstd", loaded, target)
    assert layer_heads(docker_registry, target) == [(mt.OCI_LAYER_ZSTD, b"\x28\xb5\x2f\xfd")]
    assert skopeo_raw(f"docker://{target}")["mediaType"] == mt.OCI_MANIFEST
    layout = tmp_path / "from-zstd"
    run("skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{target}", f"oci:{layout}:z")
    archive = tmp_path / "gz.tar"
    dockyard("save", "--format", "oci-archive", "--compression-format", "gzip", "-o",
             str(archive), loaded)  # fmt: skip
    [layer] = skopeo_raw(f"oci-archive:{archive}:{loaded}")["layers"]
    assert layer["mediaType"] == mt.OCI_LAYER_GZIP
