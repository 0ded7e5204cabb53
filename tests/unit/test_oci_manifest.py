import io
import json

import pytest

from dockyard.errors import DigestError, ManifestError
from dockyard.oci import digest as digests
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor, Platform

CONFIG = Descriptor.of_bytes(mt.OCI_CONFIG, b'{"rootfs":{"type":"layers","diff_ids":[]}}')
LAYER = Descriptor.of_bytes(mt.OCI_LAYER_GZIP, b"layer")


def test_manifest_round_trip_keeps_bytes_and_digest():
    built = manifests.build_manifest(CONFIG, [LAYER])
    parsed = manifests.parse(built.raw)
    assert isinstance(parsed, manifests.Manifest)
    assert parsed.raw == built.raw
    assert parsed.digest == digests.of_bytes(built.raw)
    assert parsed.blobs == (CONFIG, LAYER)


def test_parse_keeps_foreign_formatting():
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "digest": CONFIG.digest, "size": CONFIG.size},
        "layers": [],
    }
    raw = json.dumps(doc, indent=3).encode()
    parsed = manifests.parse(raw)
    assert parsed.media_type == mt.DOCKER_MANIFEST
    assert parsed.digest == digests.of_bytes(raw)


def test_index_selects_platform():
    amd = Descriptor(mt.OCI_MANIFEST, "sha256:" + "1" * 64, 10, platform=Platform("linux", "amd64"))
    arm = Descriptor(
        mt.OCI_MANIFEST, "sha256:" + "2" * 64, 10, platform=Platform("linux", "arm64", "v8")
    )
    index = manifests.build_index([amd, arm])
    assert index.select(Platform.parse("linux/arm64")) == arm
    assert index.select(Platform.parse("linux/arm64/v8")) == arm
    assert index.select(Platform.parse("linux/amd64")) == amd
    with pytest.raises(ManifestError, match="linux/amd64, linux/arm64/v8"):
        index.select(Platform.parse("linux/s390x"))


def test_index_without_media_type_field_is_detected_by_shape():
    raw = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert isinstance(manifests.parse(raw), manifests.Index)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "invalid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"schemaVersion": 1, "fsLayers": []}', "schema 1"),
        (b'{"schemaVersion": 2, "mediaType": "text/plain"}', "unknown manifest media type"),
        (
            json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "layers": []}).encode(),
            "config: expected an object",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": mt.OCI_MANIFEST,
                    "config": {"mediaType": mt.OCI_CONFIG, "digest": "sha256:zz", "size": 1},
                    "layers": [],
                }
            ).encode(),
            "invalid digest",
        ),
    ],
)
def test_invalid_documents_name_the_place(raw, message):
    with pytest.raises(ManifestError, match=message) as err:
        manifests.parse(raw, where="test.json")
    assert "test.json" in str(err.value)


def test_verifying_reader_accepts_exact_content():
    data = b"hello" * 1000
    reader = digests.VerifyingReader(io.BytesIO(data), digests.of_bytes(data), len(data))
    assert b"".join(iter(lambda: reader.read(333), b"")) == data


@pytest.mark.parametrize("size", [None, 5000])
def test_verifying_reader_rejects_other_content(size):
    reader = digests.VerifyingReader(io.BytesIO(b"evil" * 1250), digests.of_bytes(b"x"), size)
    with pytest.raises(DigestError, match=digests.of_bytes(b"x")):
        while reader.read(1024):
            pass


def test_verifying_reader_rejects_oversize():
    data = b"a" * 100
    reader = digests.VerifyingReader(io.BytesIO(data), digests.of_bytes(data), 10)
    with pytest.raises(DigestError, match="expected 10"):
        reader.read()


def test_config_requires_diff_ids():
    with pytest.raises(ManifestError, match="diff_ids"):
        manifests.parse_config(b'{"rootfs": {}}')
