import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dockyard.errors import InvalidReference, ManifestError, NotFound
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.reference import parse
from dockyard.store import Store, default_root, ref_key
from tests.support.sample_images import copy_by_hand, put_indexed, sample_image

REF_NAME = "org.opencontainers.image.ref.name"


def store_with(store_root: Path, *names: str):
    store = Store(store_root)
    image = sample_image()
    for name in names:
        copy_by_hand(image, store.destination(parse(name)))
    return store, image


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKYARD_ROOT", str(tmp_path))
    assert default_root() == tmp_path
    monkeypatch.delenv("DOCKYARD_ROOT")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_root() == Path("/var/lib/dockyard")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_root() == tmp_path / "data" / "dockyard"


def test_store_is_an_oci_layout_named_by_full_references(store_root):
    _, image = store_with(store_root, "busybox", "localhost:5000/team/app:v1")
    doc = json.loads((store_root / "index.json").read_text())
    assert [(e["annotations"][REF_NAME], e["digest"]) for e in doc["manifests"]] == [
        ("docker.io/library/busybox:latest", image.doc.digest),
        ("localhost:5000/team/app:v1", image.doc.digest),
    ]
    assert (store_root / "oci-layout").is_file()
    assert (store_root / "tmp").is_dir()


def test_resolve_by_tag_and_by_digest(store_root):
    store, image = store_with(store_root, "busybox:1")
    assert store.resolve(parse("docker.io/library/busybox:1")).digest == image.doc.digest
    by_digest = store.resolve(parse(f"anything/else@{image.doc.digest}"))
    assert (by_digest.media_type, by_digest.size) == (mt.OCI_MANIFEST, len(image.doc.raw))
    with pytest.raises(
        NotFound, match=f"image docker.io/library/busybox:2 not found in store {store_root}"
    ):
        store.resolve(parse("busybox:2"))
    with pytest.raises(NotFound, match="not found"):
        store.resolve(parse("busybox@sha256:" + "0" * 64))
    with pytest.raises(NotFound):
        Store(store_root / "never-created").resolve(parse("busybox"))


def test_source_reads_what_was_stored(store_root):
    store, image = store_with(store_root, "busybox")
    source = store.source(parse("busybox"))
    assert source.root_manifest().data == image.doc.raw
    assert source.manifest(image.doc.digest).data == image.doc.raw
    with source.open_blob(image.doc.layers[0]) as f:
        assert f.read() == image.blobs[image.doc.layers[0].digest]


def test_tag_and_untag(store_root):
    store, _ = store_with(store_root, "busybox")
    desc = store.resolve(parse("busybox"))
    store.tag(parse("example.com/copy:1"), desc)
    store.untag(parse("busybox"))
    assert [str(i.ref) for i in store.images()] == ["example.com/copy:1"]
    with pytest.raises(NotFound, match=r"docker\.io/library/busybox:latest"):
        store.untag(parse("busybox"))
    with pytest.raises(NotFound, match=r"manifest sha256:0+ not found"):
        store.tag(parse("x:y"), Descriptor(mt.OCI_MANIFEST, "sha256:" + "0" * 64, 1))
    with pytest.raises(ManifestError, match="another digest"):
        store.tag(parse("x@sha256:" + "1" * 64), desc)


def test_image_pulled_by_digest_keeps_a_digest_name(store_root):
    image = sample_image()
    store, _ = store_with(store_root)
    copy_by_hand(image, store.destination(parse(f"busybox@{image.doc.digest}")))
    [info] = store.images()
    assert ref_key(info.ref) == f"docker.io/library/busybox@{image.doc.digest}"
    assert info.ref.tag is None
    with pytest.raises(InvalidReference):
        ref_key(parse("busybox", default_tag=False))


def test_images_lists_id_created_and_size(store_root):
    store, image = store_with(store_root, "busybox")
    [info] = store.images()
    assert info.ref == parse("busybox")
    assert info.image_id == image.doc.config.digest
    assert info.created == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert info.size == len(image.doc.raw) + sum(len(b) for b in image.blobs.values())
    config = store.read_config(store.read_manifest(info.descriptor))
    assert config["rootfs"]["diff_ids"] == image.diff_ids


def test_multi_platform_image_is_listed_by_its_host_child(store_root):
    store = Store(store_root)
    image = sample_image()
    host = Descriptor(
        image.doc.media_type, image.doc.digest, len(image.doc.raw), platform=Platform.host()
    )
    other = Descriptor(
        mt.OCI_MANIFEST, "sha256:" + "2" * 64, 10, platform=Platform("linux", "s390x")
    )
    index = put_indexed(image, store.destination(parse("multi")), [host, other])
    [info] = store.images()
    assert info.descriptor.digest == index.digest
    assert info.image_id == image.doc.config.digest
    assert store.image_manifest(info.descriptor, Platform("linux", "s390x")) is None


def test_entries_other_tools_wrote_are_not_listed(store_root):
    store, _ = store_with(store_root, "busybox")
    desc = store.resolve(parse("busybox"))
    store.layout.set_name("latest", desc)  # e.g. `skopeo copy ... oci:ROOT:latest`
    assert [str(i.ref) for i in store.images()] == ["docker.io/library/busybox:latest"]
