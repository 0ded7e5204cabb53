import gc
import gzip
import io
import json
import tarfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from dockyard.errors import DigestError, NotFound, StoreError
from dockyard.layout.oci_archive import (
    OCIArchiveDestination,
    OCIArchiveSource,
    OCIArchiveWriter,
    blob_name,
)
from dockyard.layout.oci_dir import REF_NAME
from dockyard.oci import mediatypes as mt
from tests.support.sample_images import copy_by_hand, sample_image


def members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_round_trip(tmp_path):
    path = tmp_path / "image.tar"
    image = sample_image({"a": b"1"}, {"b": b"2"})
    dest = OCIArchiveDestination(path, "v1")
    for desc in image.doc.blobs:
        dest.put_blob(desc, image.open_blob(desc))
    dest.put_manifest(image.root_manifest(), root=True)
    assert not path.exists()  # nothing visible before commit
    dest.commit()

    files = members(path)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    [entry] = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"] == {REF_NAME: "v1"}
    assert entry["digest"] == image.doc.digest
    for digest, data in image.blobs.items():
        assert files[blob_name(digest)] == data

    source = OCIArchiveSource(path, "v1")
    assert source.root_manifest().data == image.doc.raw
    for desc in image.doc.blobs:
        with source.open_blob(desc) as f:
            assert f.read() == image.blobs[desc.digest]
    source.close()


def test_several_images_in_one_archive(tmp_path):
    path = tmp_path / "two.tar"
    first, second = sample_image({"f": b"1"}), sample_image({"f": b"2"})
    with OCIArchiveWriter(path) as writer:
        copy_by_hand(first, writer.destination("one"))
        copy_by_hand(second, writer.destination("two"))
        writer.commit()
    assert OCIArchiveSource(path, "two").root_manifest().data == second.doc.raw
    with pytest.raises(NotFound, match=r"holds 2 images: name one \(one, two\)"):
        OCIArchiveSource(path)
    with pytest.raises(NotFound, match="no image named 'three'"):
        OCIArchiveSource(path, "three")


def test_bad_blob_leaves_no_partial_member(tmp_path):
    path = tmp_path / "image.tar"
    image = sample_image()
    layer = image.doc.layers[0]
    good = image.blobs[layer.digest]
    dest = OCIArchiveDestination(path, "v1")
    with pytest.raises(DigestError, match=layer.digest):
        dest.put_blob(layer, io.BytesIO(good[:-3] + b"xyz"))
    assert not dest.has_blob(layer)
    copy_by_hand(image, dest)  # the archive is still usable
    files = members(path)
    assert files[blob_name(layer.digest)] == good
    assert sorted(files) == sorted(
        [
            "oci-layout",
            "index.json",
            *(blob_name(d) for d in image.blobs),
            blob_name(image.doc.digest),
        ]
    )


def test_parallel_blobs(tmp_path):
    path = tmp_path / "many.tar"
    image = sample_image(*({f"f{i}": bytes([i]) * (i * 1000)} for i in range(12)))
    dest = OCIArchiveDestination(path, "v1")
    descs = list(image.doc.blobs)
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda d: dest.put_blob(d, image.open_blob(d)), descs + descs))
    dest.put_manifest(image.root_manifest(), root=True)
    dest.commit()
    files = members(path)
    assert all(files[blob_name(d.digest)] == image.blobs[d.digest] for d in descs)
    with tarfile.open(path) as tar:
        assert len(tar.getnames()) == len(descs) + 3  # each blob once, manifest, index, layout


def test_abort_and_abandoned_writers_leave_nothing(tmp_path):
    image = sample_image()
    with OCIArchiveDestination(tmp_path / "a.tar", "v1") as dest:
        dest.put_blob(image.doc.config, image.open_blob(image.doc.config))
    dest = OCIArchiveDestination(tmp_path / "b.tar", "v1")
    dest.put_blob(image.doc.config, image.open_blob(image.doc.config))
    assert len(list(tmp_path.iterdir())) == 1  # b's temp file
    del dest
    gc.collect()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StoreError, match="no root manifest"):
        OCIArchiveDestination(tmp_path / "c.tar", "v1").commit()


def test_reads_archives_with_dot_slash_names(tmp_path):
    """``tar -C layout .`` prefixes every name with ``./``."""
    image = sample_image()
    path = tmp_path / "dot.tar"
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": image.doc.digest,
                "size": len(image.doc.raw),
                "annotations": {REF_NAME: "latest"},
            }
        ],
    }
    files = {
        "./oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
        "./index.json": json.dumps(index).encode(),
        "./" + blob_name(image.doc.digest): image.doc.raw,
        **{"./" + blob_name(d): data for d, data in image.blobs.items()},
    }
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    source = OCIArchiveSource(path)
    assert source.root_manifest().data == image.doc.raw
    with source.open_blob(image.doc.layers[0]) as f:
        assert f.read() == image.blobs[image.doc.layers[0].digest]


def test_refuses_compressed_or_foreign_archives(tmp_path):
    (tmp_path / "x.tar.gz").write_bytes(gzip.compress(b"\0" * 1024))
    with pytest.raises(StoreError, match="not an uncompressed tar"):
        OCIArchiveSource(tmp_path / "x.tar.gz")
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with pytest.raises(NotFound, match="not an oci-archive"):
        OCIArchiveSource(tmp_path / "empty.tar")
    with pytest.raises(NotFound, match="not found"):
        OCIArchiveSource(tmp_path / "missing.tar")
