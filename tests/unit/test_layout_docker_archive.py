import gzip
import hashlib
import io
import json
import tarfile

import pytest
import zstandard

from dockyard.errors import DigestError, LayerError, ManifestError, NotFound
from dockyard.layout.docker_archive import (
    DockerArchiveDestination,
    DockerArchiveSource,
    DockerArchiveWriter,
    list_images,
)
from dockyard.oci import digest as digests
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.home import RawManifest
from tests.support.sample_images import copy_by_hand, layer_tar, sample_image


def members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def write_tar(path, files: dict[str, bytes], symlinks: dict[str, str] | None = None):
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)


def hex_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_layers_are_written_uncompressed_and_named_by_diff_id(tmp_path, compression):
    path = tmp_path / "image.tar"
    image = sample_image({"a": b"1" * 5000}, {"b": b"2"}, compression=compression)
    copy_by_hand(image, DockerArchiveDestination(path, "busybox:1"))

    files = members(path)
    config_hex = image.doc.config.digest[7:]
    assert json.loads(files["manifest.json"]) == [
        {
            "Config": f"{config_hex}.json",
            "RepoTags": ["docker.io/library/busybox:1"],
            "Layers": [f"{d[7:]}.tar" for d in image.diff_ids],
        }
    ]
    assert files[f"{config_hex}.json"] == image.blobs[image.doc.config.digest]
    for diff_id, tar in zip(image.diff_ids, image.tars, strict=True):
        assert files[f"{diff_id[7:]}.tar"] == tar
    assert json.loads(files["repositories"]) == {
        "docker.io/library/busybox": {"1": image.diff_ids[-1][7:]}
    }


def test_read_back_as_a_docker_image(tmp_path):
    path = tmp_path / "image.tar"
    image = sample_image({"a": b"1"}, {"b": b"2"})
    copy_by_hand(image, DockerArchiveDestination(path, "busybox:1"))

    source = DockerArchiveSource(path)
    assert source.repo_tags == ("docker.io/library/busybox:1",)
    raw = source.root_manifest()
    parsed = manifests.parse(raw.data, raw.media_type)
    assert parsed.media_type == mt.DOCKER_MANIFEST
    assert parsed.config == Descriptor(
        mt.DOCKER_CONFIG, image.doc.config.digest, image.doc.config.size
    )
    assert [(d.media_type, d.digest) for d in parsed.layers] == [
        (mt.DOCKER_LAYER, diff_id) for diff_id in image.diff_ids
    ]
    assert source.manifest(parsed.digest) == raw
    for desc, tar in zip(parsed.layers, image.tars, strict=True):
        with source.open_blob(desc) as f:
            assert f.read() == tar
    source.close()


def test_several_images_share_layers_and_merge_tags(tmp_path):
    path = tmp_path / "multi.tar"
    base = {"base": b"shared"}
    first = sample_image(base, {"one": b"1"})
    second = sample_image(base, {"two": b"2"})
    with DockerArchiveWriter(path) as writer:
        copy_by_hand(first, writer.destination("first:a"))
        copy_by_hand(second, writer.destination("quay.io/x/second:b"))
        copy_by_hand(first, writer.destination("first:c"))
        writer.commit()

    images = list_images(path)
    assert [i.repo_tags for i in images] == [
        ("docker.io/library/first:a", "docker.io/library/first:c"),
        ("quay.io/x/second:b",),
    ]
    assert sum(name.endswith(".tar") for name in members(path)) == 3  # shared base once
    by_tag = DockerArchiveSource(path, "quay.io/x/second:b")
    by_index = DockerArchiveSource(path, "@1")
    assert by_tag.root_manifest() == by_index.root_manifest()
    short = DockerArchiveSource(path, "first:c")  # matches docker.io/library/first:c
    assert json.loads(short.root_manifest().data)["config"]["digest"] == first.doc.config.digest
    with pytest.raises(NotFound, match="holds 2 images"):
        DockerArchiveSource(path)
    with pytest.raises(NotFound, match="no image tagged first:zzz"):
        DockerArchiveSource(path, "first:zzz")
    with pytest.raises(NotFound, match="no image @2"):
        DockerArchiveSource(path, "@2")


def test_untagged_image(tmp_path):
    path = tmp_path / "untagged.tar"
    copy_by_hand(sample_image(), DockerArchiveDestination(path))
    assert list_images(path)[0].repo_tags == ()
    assert json.loads(members(path)["repositories"]) == {}


def test_diff_ids_that_do_not_match_the_layers_are_refused(tmp_path):
    image = sample_image()
    lying = sample_image({"other": b"content"})
    image.blobs[lying.doc.config.digest] = lying.blobs[lying.doc.config.digest]
    doc = json.loads(image.doc.raw)
    doc["config"] = lying.doc.config.to_dict()
    image.doc = manifests.parse(manifests.dumps(doc))
    dest = DockerArchiveDestination(tmp_path / "bad.tar", "x:y")
    with pytest.raises(ManifestError, match="do not match the config diff_ids"):
        copy_by_hand(image, dest)
    dest.abort()
    assert list(tmp_path.iterdir()) == []


def test_bad_compressed_blob_is_refused(tmp_path):
    image = sample_image()
    layer = image.doc.layers[0]
    image.blobs[layer.digest] = gzip.compress(b"another tar entirely", mtime=0)
    dest = DockerArchiveDestination(tmp_path / "bad.tar", "x:y")
    with pytest.raises(DigestError, match=layer.digest):
        copy_by_hand(image, dest)
    assert not dest.has_blob(layer)


def test_an_index_cannot_go_into_a_docker_archive(tmp_path):
    image = sample_image()
    index = manifests.build_index([image.doc.descriptor()])
    dest = DockerArchiveDestination(tmp_path / "x.tar", "x:y")
    with pytest.raises(ManifestError, match="single-platform"):
        dest.put_manifest(RawManifest(index.raw, index.media_type), root=True)
    dest.abort()


def test_reads_legacy_docker_save_layout(tmp_path):
    """docker < 25: ``<id>/layer.tar`` per layer, a repeated layer as a symlink, and
    here one layer kept gzip-compressed (seen in hand-made archives)."""
    tar_a, tar_b = layer_tar({"a": b"1"}), layer_tar({"b": b"2"})
    gz_b = gzip.compress(tar_b, mtime=0)
    diff_ids = [f"sha256:{hex_of(t)}" for t in (tar_a, tar_b, tar_a)]
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    path = tmp_path / "legacy.tar"
    manifest = [
        {
            "Config": f"{hex_of(config)}.json",
            "RepoTags": ["busybox:latest"],
            "Layers": ["id1/layer.tar", "id2/layer.tar", "id3/layer.tar"],
        }
    ]
    write_tar(
        path,
        {
            "manifest.json": json.dumps(manifest).encode(),
            f"{hex_of(config)}.json": config,
            "id1/layer.tar": tar_a,
            "id1/json": b"{}",
            "id2/layer.tar": gz_b,
        },
        symlinks={"id3/layer.tar": "../id1/layer.tar"},
    )
    source = DockerArchiveSource(path, "docker.io/library/busybox:latest")
    parsed = manifests.parse(source.root_manifest().data)
    assert [(d.media_type, d.digest, d.size) for d in parsed.layers] == [
        (mt.DOCKER_LAYER, diff_ids[0], len(tar_a)),
        (mt.DOCKER_LAYER_GZIP, digests.of_bytes(gz_b), len(gz_b)),
        (mt.DOCKER_LAYER, diff_ids[0], len(tar_a)),
    ]
    with source.open_blob(parsed.layers[1]) as f:
        assert f.read() == gz_b
    with source.open_blob(parsed.layers[2]) as f:
        assert f.read() == tar_a


def test_reads_docker_25_blob_paths_and_zstd_layers(tmp_path):
    """docker 25+: members under ``blobs/sha256``; a zstd layer makes the manifest OCI."""
    tar_a = layer_tar({"a": b"1"})
    zst = zstandard.ZstdCompressor().compress(tar_a)
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [f"sha256:{hex_of(tar_a)}"]}})
    config = config.encode()
    path = tmp_path / "new.tar"
    manifest = [
        {
            "Config": f"blobs/sha256/{hex_of(config)}",
            "RepoTags": None,
            "Layers": [f"blobs/sha256/{hex_of(zst)}"],
        }
    ]
    write_tar(
        path,
        {
            "manifest.json": json.dumps(manifest).encode(),
            f"blobs/sha256/{hex_of(config)}": config,
            f"blobs/sha256/{hex_of(zst)}": zst,
        },
    )
    source = DockerArchiveSource(path)
    parsed = manifests.parse(source.root_manifest().data)
    assert parsed.media_type == mt.OCI_MANIFEST
    assert parsed.config.media_type == mt.OCI_CONFIG
    assert [(d.media_type, d.digest) for d in parsed.layers] == [
        (mt.OCI_LAYER_ZSTD, f"sha256:{hex_of(zst)}")
    ]


def test_a_layer_that_lies_about_its_diff_id_fails_when_read(tmp_path):
    tar_a = layer_tar({"a": b"1"})
    wrong = f"sha256:{hex_of(b'something else')}"
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [wrong]}}).encode()
    path = tmp_path / "lying.tar"
    manifest = [{"Config": "c.json", "RepoTags": [], "Layers": ["l.tar"]}]
    write_tar(
        path, {"manifest.json": json.dumps(manifest).encode(), "c.json": config, "l.tar": tar_a}
    )
    source = DockerArchiveSource(path)
    layer = manifests.parse(source.root_manifest().data).layers[0]
    with source.open_blob(layer) as f, pytest.raises(DigestError, match=wrong):
        while f.read(1 << 20):
            pass


def test_malformed_archives(tmp_path):
    write_tar(tmp_path / "no-manifest.tar", {"x": b"y"})
    with pytest.raises(NotFound, match="not a docker-archive"):
        DockerArchiveSource(tmp_path / "no-manifest.tar")
    write_tar(tmp_path / "bad.tar", {"manifest.json": b'{"not": "a list"}'})
    with pytest.raises(ManifestError, match="expected a list"):
        DockerArchiveSource(tmp_path / "bad.tar")
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = [{"Config": "c.json", "Layers": ["missing.tar"]}]
    write_tar(
        tmp_path / "short.tar", {"manifest.json": json.dumps(manifest).encode(), "c.json": config}
    )
    with pytest.raises(ManifestError, match="0 diff_ids for 1 layers"):
        DockerArchiveSource(tmp_path / "short.tar")
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}})
    manifest = [{"Config": "c.json", "Layers": ["id/layer.tar"]}]
    files = {
        "manifest.json": json.dumps(manifest).encode(),
        "c.json": config.encode(),
        "id/layer.tar": b"\xfd7zXZ\x00 an xz stream",
    }
    write_tar(tmp_path / "xz.tar", files)
    with pytest.raises(LayerError, match=r"xz\.tar: id/layer\.tar: layer is xz-compressed"):
        DockerArchiveSource(tmp_path / "xz.tar")
