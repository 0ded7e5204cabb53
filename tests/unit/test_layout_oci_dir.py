import io
import json
import threading

import pytest

from dockyard.errors import DigestError, NotFound, StoreError
from dockyard.files.atomic import is_temp
from dockyard.layout.oci_dir import REF_NAME, LayoutDestination, LayoutSource, OCILayout
from dockyard.oci import digest as digests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from tests.support.sample_images import copy_by_hand, sample_image


def index_doc(path):
    return json.loads((path / "index.json").read_text())


def test_round_trip_keeps_bytes(tmp_path):
    image = sample_image({"a": b"1"}, {"b": b"2"})
    copy_by_hand(image, LayoutDestination(tmp_path, "v1"))

    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    [entry] = index_doc(tmp_path)["manifests"]
    assert entry == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": image.doc.digest,
        "size": len(image.doc.raw),
        "annotations": {REF_NAME: "v1"},
    }
    source = LayoutSource(tmp_path, "v1")
    assert source.root_manifest().data == image.doc.raw
    assert source.manifest(image.doc.digest).media_type == mt.OCI_MANIFEST
    for desc in image.doc.blobs:
        with source.open_blob(desc) as f:
            assert f.read() == image.blobs[desc.digest]


def test_docker_manifest_is_stored_as_is_with_its_own_media_type(tmp_path):
    image = sample_image(docker=True)
    copy_by_hand(image, LayoutDestination(tmp_path, "d"))
    [entry] = index_doc(tmp_path)["manifests"]
    assert entry["mediaType"] == mt.DOCKER_MANIFEST
    assert entry["digest"] == image.doc.digest
    raw = LayoutSource(tmp_path, "d").root_manifest()
    assert (raw.data, raw.media_type) == (image.doc.raw, mt.DOCKER_MANIFEST)


def test_a_name_moves_to_the_newer_image_and_others_stay(tmp_path):
    first, second, third = (sample_image({"f": bytes([i])}) for i in range(3))
    copy_by_hand(first, LayoutDestination(tmp_path, "v1"))
    copy_by_hand(second, LayoutDestination(tmp_path, "keep"))
    copy_by_hand(third, LayoutDestination(tmp_path, "v1"))
    entries = index_doc(tmp_path)["manifests"]
    assert [(e["annotations"][REF_NAME], e["digest"]) for e in entries] == [
        ("v1", third.doc.digest),
        ("keep", second.doc.digest),
    ]
    assert LayoutSource(tmp_path, "v1").root_manifest().data == third.doc.raw


def test_unnamed_image_is_found_when_it_is_the_only_one(tmp_path):
    image = sample_image()
    copy_by_hand(image, LayoutDestination(tmp_path))
    copy_by_hand(image, LayoutDestination(tmp_path))  # once per digest
    assert len(index_doc(tmp_path)["manifests"]) == 1
    assert LayoutSource(tmp_path).descriptor.digest == image.doc.digest


def test_resolving_needs_a_name_when_there_are_several(tmp_path):
    for tag in ("a", "b"):
        copy_by_hand(sample_image({"f": tag.encode()}), LayoutDestination(tmp_path, tag))
    with pytest.raises(NotFound, match=r"holds 2 images: name one \(a, b\)"):
        LayoutSource(tmp_path)
    with pytest.raises(NotFound, match=f"no image named 'c' in {tmp_path}"):
        LayoutSource(tmp_path, "c")


def test_empty_and_missing_layouts(tmp_path):
    with pytest.raises(NotFound, match="not an OCI image layout"):
        LayoutSource(tmp_path / "nothing", "x")
    OCILayout(tmp_path / "empty").ensure()
    with pytest.raises(NotFound, match="holds no image"):
        LayoutSource(tmp_path / "empty")


def test_bad_blob_is_refused_and_not_named(tmp_path):
    image = sample_image()
    layer = image.doc.layers[0]
    image.blobs[layer.digest] = b"corrupted in transit"
    with pytest.raises(DigestError, match=layer.digest):
        copy_by_hand(image, LayoutDestination(tmp_path, "v1"))
    layout = OCILayout(tmp_path)
    assert not layout.blobs.has(layer.digest)
    assert not any(is_temp(p.name) for p in tmp_path.rglob("*"))
    assert layout.index().manifests == ()


def test_commit_without_a_manifest_fails(tmp_path):
    with pytest.raises(StoreError, match="no root manifest"):
        LayoutDestination(tmp_path, "v1").commit()


def test_index_rewrite_keeps_foreign_fields(tmp_path):
    layout = OCILayout(tmp_path)
    layout.ensure()
    doc = index_doc(tmp_path)
    doc["annotations"] = {"made.by": "someone else"}
    (tmp_path / "index.json").write_text(json.dumps(doc))
    digest = layout.blobs.write_bytes(sample_image().doc.raw)
    layout.set_name("x", Descriptor(mt.OCI_MANIFEST, digest, 1))
    assert index_doc(tmp_path)["annotations"] == {"made.by": "someone else"}
    assert layout.remove_name("x") and not layout.remove_name("x")
    assert index_doc(tmp_path)["manifests"] == []


def test_concurrent_namers_all_keep_their_entry(tmp_path):
    layout = OCILayout(tmp_path)
    layout.ensure()
    digest = layout.blobs.write(digests.of_bytes(b"m"), io.BytesIO(b"m")).name
    start = threading.Barrier(4)

    def name_many(worker: int) -> None:
        start.wait()
        for i in range(25):
            OCILayout(tmp_path).set_name(
                f"w{worker}-{i}", Descriptor(mt.OCI_MANIFEST, "sha256:" + digest, 1)
            )

    threads = [threading.Thread(target=name_many, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = {e["annotations"][REF_NAME] for e in index_doc(tmp_path)["manifests"]}
    assert names == {f"w{w}-{i}" for w in range(4) for i in range(25)}


def test_a_written_layout_holds_no_lock_file(tmp_path):
    """skopeo, umoci and friends see only what the spec names: the index lock is the
    directory itself."""
    layout = OCILayout(tmp_path / "oci")
    layout.ensure()
    digest = layout.blobs.write(digests.of_bytes(b"m"), io.BytesIO(b"m")).name
    layout.set_name("v1", Descriptor(mt.OCI_MANIFEST, "sha256:" + digest, 1))
    layout.remove_name("v1")
    assert sorted(p.name for p in layout.root.iterdir()) == ["blobs", "index.json", "oci-layout"]


def test_naming_an_image_again_leaves_the_index_alone(tmp_path):
    """A cached rebuild names the image it named last time: nothing to write (an atomic
    rewrite would be a new inode and an fsync); a name that moves is written."""
    layout = OCILayout(tmp_path)
    layout.ensure()
    first, second = (
        "sha256:" + layout.blobs.write(digests.of_bytes(m), io.BytesIO(m)).name
        for m in (b"m1", b"m2")
    )
    layout.set_name("v1", Descriptor(mt.OCI_MANIFEST, first, 2))
    before = (tmp_path / "index.json").stat()
    layout.set_name("v1", Descriptor(mt.OCI_MANIFEST, first, 2))
    assert (tmp_path / "index.json").stat().st_ino == before.st_ino
    layout.set_name("v1", Descriptor(mt.OCI_MANIFEST, second, 2))
    assert (tmp_path / "index.json").stat().st_ino != before.st_ino
    [entry] = index_doc(tmp_path)["manifests"]
    assert entry["digest"] == second
