"""The sample images the layout and store tests use are the images they claim to be."""

from __future__ import annotations

import hashlib

import zstandard

from dockyard.oci import manifest as manifests
from tests.support.sample_images import sample_image


def test_sample_image_is_consistent():
    image = sample_image({"a": b"1"}, {"b": b"2"}, compression="zstd")
    config = manifests.parse_config(image.blobs[image.doc.config.digest])
    assert config["rootfs"]["diff_ids"] == image.diff_ids
    for desc, tar in zip(image.doc.layers, image.tars, strict=True):
        data = image.blobs[desc.digest]
        assert hashlib.sha256(data).hexdigest() == desc.digest.split(":")[1]
        assert zstandard.ZstdDecompressor().decompress(data) == tar
