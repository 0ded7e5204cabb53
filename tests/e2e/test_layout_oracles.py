"""Layout dirs and archives we write, read by skopeo, umoci and podman; and theirs read by us.

The images come from the ``busybox_layout`` fixture (made by umoci). Copies are done
with the ImageSource/ImageDestination methods alone (``copy_by_hand``).
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from dockyard.layout.docker_archive import (
    DockerArchiveDestination,
    DockerArchiveSource,
    DockerArchiveWriter,
)
from dockyard.layout.oci_archive import OCIArchiveDestination, OCIArchiveSource
from dockyard.layout.oci_dir import LayoutDestination, LayoutSource
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.home import RawManifest
from tests.conftest import need
from tests.support.sample_images import copy_by_hand

pytestmark = pytest.mark.e2e


def run(*args: str | Path) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert done.returncode == 0, f"{args[0]} failed: {done.stderr}"
    return done.stdout


def skopeo_inspect(location: str, *flags: str) -> dict:
    need("skopeo")
    return json.loads(run("skopeo", "inspect", *flags, location))


@pytest.fixture(scope="module")
def busybox(busybox_layout) -> tuple[manifests.Manifest, list[str]]:
    """The fixture image's manifest and config diff_ids."""
    source = LayoutSource(busybox_layout, "latest")
    raw = source.root_manifest()
    parsed = manifests.parse(raw.data, raw.media_type)
    with source.open_blob(parsed.config) as f:
        config = manifests.parse_config(f.read())
    return parsed, config["rootfs"]["diff_ids"]


@pytest.fixture
def podman(tmp_path):
    """podman on a throwaway storage root, so nothing touches the host's images."""
    need("podman")
    with tempfile.TemporaryDirectory(prefix="dy-podman-") as runroot:  # must be < 50 chars
        base = [
            "podman",
            "--root", tmp_path / "podman-root",
            "--runroot", runroot,
            "--storage-driver", "vfs",
            "--events-backend", "none",
            "--cgroup-manager", "cgroupfs",
        ]  # fmt: skip
        yield lambda *args: run(*base, *args)


def unpack_busybox(layout: Path, tag: str, into: Path, busybox_rootfs: Path) -> None:
    need("umoci")
    run("umoci", "raw", "unpack", "--image", f"{layout}:{tag}", into)
    unpacked = (into / "bin" / "busybox").read_bytes()
    assert unpacked == (busybox_rootfs / "bin" / "busybox").read_bytes()


def busybox_in_layers(source, manifest: manifests.Manifest, busybox_rootfs: Path) -> None:
    """The image's layers (a Docker-typed image umoci refuses) hold our busybox binary."""
    found = []
    for desc in manifest.layers:
        with source.open_blob(desc) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                if member.name.removeprefix("./") == "bin/busybox":
                    found.append(tar.extractfile(member).read())
    assert found == [(busybox_rootfs / "bin" / "busybox").read_bytes()]


def test_layout_dir_is_read_by_skopeo_and_umoci(busybox_layout, busybox, busybox_rootfs, tmp_path):
    out = tmp_path / "out"
    copy_by_hand(LayoutSource(busybox_layout, "latest"), LayoutDestination(out, "v1"))
    manifest, _ = busybox
    info = skopeo_inspect(f"oci:{out}:v1")
    assert info["Digest"] == manifest.digest
    assert info["Layers"] == [d.digest for d in manifest.layers]
    unpack_busybox(out, "v1", tmp_path / "rootfs", busybox_rootfs)


def test_docker_typed_entry_is_invisible_to_skopeo_by_name(busybox_layout, busybox, tmp_path):
    """Documents the peer behaviour oci_dir's docstring describes: skopeo's ``oci:``
    transport skips index entries with a Docker media type when looking up a name, yet
    opens one that is the layout's only entry when no name is given."""
    manifest, _ = busybox
    source = LayoutSource(busybox_layout, "latest")
    config = Descriptor(mt.DOCKER_CONFIG, manifest.config.digest, manifest.config.size)
    layers = [
        Descriptor(
            mt.layer_media_type(mt.layer_compression(d.media_type), docker=True), d.digest, d.size
        )
        for d in manifest.layers
    ]
    docker = manifests.build_manifest(config, layers, media_type=mt.DOCKER_MANIFEST)
    out = tmp_path / "docker-typed"
    dest = LayoutDestination(out, "d")
    for desc in docker.blobs:
        with source.open_blob(desc) as f:
            dest.put_blob(desc, f)
    dest.put_manifest(RawManifest(docker.raw, mt.DOCKER_MANIFEST), root=True)
    dest.commit()

    [entry] = json.loads((out / "index.json").read_text())["manifests"]
    assert entry["mediaType"] == mt.DOCKER_MANIFEST
    found = subprocess.run(["skopeo", "inspect", f"oci:{out}:d"], capture_output=True, text=True)
    assert found.returncode != 0 and "no descriptor found for reference" in found.stderr
    assert skopeo_inspect(f"oci:{out}")["Digest"] == docker.digest


def test_oci_archive_is_read_by_skopeo(busybox_layout, busybox, tmp_path):
    path = tmp_path / "busybox-oci.tar"
    copy_by_hand(LayoutSource(busybox_layout, "latest"), OCIArchiveDestination(path, "v1"))
    manifest, _ = busybox
    assert skopeo_inspect(f"oci-archive:{path}:v1")["Digest"] == manifest.digest
    assert skopeo_inspect(f"oci-archive:{path}")["Digest"] == manifest.digest


def test_docker_archive_is_read_by_skopeo_and_loaded_by_podman(
    busybox_layout, busybox, podman, tmp_path
):
    path = tmp_path / "busybox-docker.tar"
    copy_by_hand(
        LayoutSource(busybox_layout, "latest"), DockerArchiveDestination(path, "busybox:e2e")
    )
    manifest, diff_ids = busybox

    info = skopeo_inspect(f"docker-archive:{path}")
    assert info["Layers"] == diff_ids  # layers stored uncompressed: digest == diff_id
    config = skopeo_inspect(f"docker-archive:{path}", "--config")
    assert config["rootfs"]["diff_ids"] == diff_ids

    assert "docker.io/library/busybox:e2e" in podman("load", "-i", path)
    [image] = json.loads(podman("image", "inspect", "busybox:e2e"))
    assert image["Id"] == manifest.config.digest.split(":")[1]
    assert image["RootFS"]["Layers"] == diff_ids


def test_several_refs_in_one_docker_archive(busybox_layout, podman, tmp_path):
    path = tmp_path / "two.tar"
    with DockerArchiveWriter(path) as writer:
        for ref in ("busybox:one", "localhost:5000/mirror/busybox:two"):
            copy_by_hand(LayoutSource(busybox_layout, "latest"), writer.destination(ref))
        writer.commit()
    podman("load", "-i", path)
    names = {
        n for image in json.loads(podman("images", "--format", "json")) for n in image["Names"]
    }
    assert {"docker.io/library/busybox:one", "localhost:5000/mirror/busybox:two"} <= names
    assert skopeo_inspect(f"docker-archive:{path}:localhost:5000/mirror/busybox:two")


def test_reads_archives_skopeo_wrote(busybox_layout, busybox, busybox_rootfs, tmp_path):
    need("skopeo")
    manifest, diff_ids = busybox
    docker_path, oci_path = tmp_path / "sk-docker.tar", tmp_path / "sk-oci.tar"
    run(
        "skopeo", "copy", f"oci:{busybox_layout}:latest", f"docker-archive:{docker_path}:busybox:sk"
    )
    run("skopeo", "copy", f"oci:{busybox_layout}:latest", f"oci-archive:{oci_path}:latest")

    source = DockerArchiveSource(docker_path, "busybox:sk")
    copied = copy_by_hand(source, LayoutDestination(tmp_path / "from-docker", "x"))
    assert copied.media_type == mt.DOCKER_MANIFEST
    assert [d.digest for d in copied.layers] == diff_ids
    assert copied.config.digest == manifest.config.digest
    busybox_in_layers(LayoutSource(tmp_path / "from-docker", "x"), copied, busybox_rootfs)

    copied = copy_by_hand(OCIArchiveSource(oci_path), LayoutDestination(tmp_path / "from-oci", "x"))
    assert copied.digest == manifest.digest
    unpack_busybox(tmp_path / "from-oci", "x", tmp_path / "r2", busybox_rootfs)


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_reads_archives_podman_saved(
    busybox_layout, busybox, busybox_rootfs, podman, tmp_path, fmt
):
    _, diff_ids = busybox
    podman("pull", "-q", f"oci:{busybox_layout}:latest")
    [image] = json.loads(podman("images", "--format", "json"))
    path = tmp_path / f"podman-{fmt}.tar"
    podman("save", "--format", fmt, "-o", path, image["Id"])
    source = DockerArchiveSource(path) if fmt == "docker-archive" else OCIArchiveSource(path)
    copied = copy_by_hand(source, LayoutDestination(tmp_path / "out", "x"))
    copied_source = LayoutSource(tmp_path / "out", "x")
    with copied_source.open_blob(copied.config) as f:
        assert manifests.parse_config(f.read())["rootfs"]["diff_ids"] == diff_ids
    if copied.media_type == mt.DOCKER_MANIFEST:
        busybox_in_layers(copied_source, copied, busybox_rootfs)
    else:
        unpack_busybox(tmp_path / "out", "x", tmp_path / "rootfs", busybox_rootfs)
