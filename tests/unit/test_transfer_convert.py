"""Conversions on the way to a destination: Docker to OCI media types, layers
(re)compressed, and what ``--preserve-digests`` keeps or refuses."""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import pytest
import zstandard

from dockyard.errors import DigestError, DockyardError
from dockyard.layout.oci_dir import LayoutDestination, LayoutSource
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.transfer.convert import Conversion, plan
from dockyard.transfer.copy import copy_image
from tests.support.sample_images import compress, sample_image


def written(layout) -> tuple[manifests.Manifest, LayoutSource]:
    source = LayoutSource(layout)
    raw = source.root_manifest()
    parsed = manifests.parse(raw.data, raw.media_type)
    assert isinstance(parsed, manifests.Manifest)
    return parsed, source


def tar_of(source: LayoutSource, desc: Descriptor) -> bytes:
    with source.open_blob(desc) as f:
        data = f.read()
    kind = mt.layer_compression(desc.media_type)
    if kind == "gzip":
        return gzip.decompress(data)
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return data


def test_plan_by_destination():
    assert plan("oci") == Conversion(oci=True)
    assert plan("oci-archive", compression_format="zstd") == Conversion(True, "zstd")
    assert plan("docker") == Conversion(False, "gzip", only_uncompressed=True)
    assert plan("local").changes_nothing
    assert plan("oci", preserve_digests=True).changes_nothing
    with pytest.raises(DockyardError, match="digests cannot be preserved"):
        plan("docker-archive", preserve_digests=True)
    with pytest.raises(DockyardError, match="--compression-format"):
        plan("docker", compression_format="gzip", preserve_digests=True)
    with pytest.raises(DockyardError, match="uncompressed layers only"):
        plan("docker-archive", compression_format="zstd")


def test_a_docker_image_written_to_a_layout_gets_oci_types_and_keeps_its_blobs(tmp_path):
    image = sample_image(compression=None, docker=True)
    copy_image(image, LayoutDestination(tmp_path / "oci", "v1"), conversion=plan("oci"))
    manifest, _ = written(tmp_path / "oci")
    [entry] = json.loads((tmp_path / "oci/index.json").read_text())["manifests"]
    assert entry["mediaType"] == manifest.media_type == mt.OCI_MANIFEST
    assert manifest.config == Descriptor(mt.OCI_CONFIG, image.doc.config.digest,
                                         image.doc.config.size)  # fmt: skip
    assert [(d.media_type, d.digest) for d in manifest.layers] == [
        (mt.OCI_LAYER, image.doc.layers[0].digest)
    ]


def test_preserved_bytes_keep_the_docker_manifest(tmp_path):
    image = sample_image(compression=None, docker=True)
    result = copy_image(image, LayoutDestination(tmp_path / "oci", "v1"),
                        conversion=plan("oci", preserve_digests=True))  # fmt: skip
    assert result.digest == image.doc.digest
    assert written(tmp_path / "oci")[0].raw == image.doc.raw


def test_plain_tar_layers_are_gzipped_for_a_registry_and_keep_their_diff_id(tmp_path):
    image = sample_image({"a": b"1" * 5000}, compression=None, docker=True)
    result = copy_image(image, LayoutDestination(tmp_path / "oci"), conversion=plan("docker"))
    manifest, source = written(tmp_path / "oci")
    assert manifest.media_type == mt.DOCKER_MANIFEST and result.digest == manifest.digest
    [layer] = manifest.layers
    assert layer.media_type == mt.DOCKER_LAYER_GZIP and layer.digest != image.doc.layers[0].digest
    assert "sha256:" + hashlib.sha256(tar_of(source, layer)).hexdigest() == image.diff_ids[0]


def test_compressed_layers_and_their_manifest_stay_byte_for_byte(tmp_path):
    image = sample_image(compression="zstd")
    result = copy_image(image, LayoutDestination(tmp_path / "oci"), conversion=plan("docker"))
    assert result.digest == image.doc.digest


def test_a_gzip_layer_typed_as_plain_tar_keeps_its_bytes_and_gets_the_right_type(tmp_path):
    image = sample_image(compression="gzip", docker=True)
    lying = image.doc.layers[0]
    doc = json.loads(image.doc.raw)
    doc["layers"][0]["mediaType"] = mt.DOCKER_LAYER
    image.doc = manifests.parse(manifests.dumps(doc))
    copy_image(image, LayoutDestination(tmp_path / "oci"), conversion=plan("docker"))
    [layer] = written(tmp_path / "oci")[0].layers
    assert (layer.media_type, layer.digest) == (mt.DOCKER_LAYER_GZIP, lying.digest)


def test_zstd_makes_a_docker_image_oci(tmp_path):
    image = sample_image(compression="gzip", docker=True)
    copy_image(image, LayoutDestination(tmp_path / "oci"),
               conversion=plan("docker", compression_format="zstd"))  # fmt: skip
    manifest, source = written(tmp_path / "oci")
    assert manifest.media_type == mt.OCI_MANIFEST
    assert [d.media_type for d in manifest.layers] == [mt.OCI_LAYER_ZSTD]
    assert tar_of(source, manifest.layers[0]) == image.tars[0]


def test_a_recompressed_layer_is_verified_against_its_source_digest(tmp_path):
    """A source serving other bytes than its digest names must not get them rewritten
    into a new, self-consistent blob."""
    image = sample_image(compression=None, docker=True)
    [layer] = image.doc.layers
    image.blobs[layer.digest] = compress(image.tars[0].replace(b"hello", b"HELLO"), None)
    with pytest.raises(DigestError):
        copy_image(image, LayoutDestination(tmp_path / "oci", "v1"), conversion=plan("docker"))
    assert json.loads((tmp_path / "oci/index.json").read_text())["manifests"] == []


def test_an_index_of_docker_images_becomes_an_oci_index(tmp_path):
    image = sample_image(compression=None, docker=True)
    child = image.doc.descriptor(platform=None)
    index = manifests.build_index([child], media_type=mt.DOCKER_MANIFEST_LIST)

    class Indexed:
        def root_manifest(self):
            from dockyard.oci.home import RawManifest

            return RawManifest(index.raw, index.media_type)

        manifest = image.manifest
        open_blob = image.open_blob

    copy_image(Indexed(), LayoutDestination(tmp_path / "oci", "v1"), all_platforms=True,
               conversion=plan("oci", compression_format="gzip"))  # fmt: skip
    [entry] = json.loads((tmp_path / "oci/index.json").read_text())["manifests"]
    assert entry["mediaType"] == mt.OCI_INDEX
    source = LayoutSource(tmp_path / "oci", "v1")
    root = manifests.parse(source.root_manifest().data)
    assert isinstance(root, manifests.Index)
    [new_child] = root.manifests
    assert new_child.media_type == mt.OCI_MANIFEST
    child_manifest = manifests.parse(source.manifest(new_child.digest).data)
    assert [d.media_type for d in child_manifest.layers] == [mt.OCI_LAYER_GZIP]
