import threading

import pytest

from dockyard.errors import StoreError
from dockyard.layout.atomic import is_temp
from dockyard.oci import manifest as manifests
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.oci.home import RawManifest
from dockyard.reference import parse
from dockyard.store import Store
from tests.unit.test_layout_sample import copy_by_hand, sample_image


def test_prune_keeps_what_names_reach_and_deletes_the_rest(store_root):
    store = Store(store_root)
    kept, dropped = sample_image({"k": b"keep"}), sample_image({"d": b"drop"})
    shared = sample_image({"k": b"keep"}, {"d2": b"more"})  # shares kept's layer
    copy_by_hand(kept, store.destination(parse("kept")))
    copy_by_hand(dropped, store.destination(parse("dropped")))
    copy_by_hand(shared, store.destination(parse("shared")))
    store.untag(parse("dropped"))
    store.untag(parse("shared"))

    result = store.prune()
    expected_gone = {dropped.doc.digest, shared.doc.digest, *dropped.blobs, *shared.blobs} - set(
        kept.blobs
    )
    assert set(result.removed) == expected_gone
    assert set(store.blobs) == {kept.doc.digest, *kept.blobs}
    assert result.freed > 0
    assert store.source(parse("kept")).root_manifest().data == kept.doc.raw
    assert store.prune().removed == []


def test_prune_follows_indexes(store_root):
    store = Store(store_root)
    image = sample_image()
    child = Descriptor(
        image.doc.media_type, image.doc.digest, len(image.doc.raw), platform=Platform.host()
    )
    index = manifests.build_index([child])
    dest = store.destination(parse("multi"))
    for desc in image.doc.blobs:
        dest.put_blob(desc, image.open_blob(desc))
    dest.put_manifest(image.root_manifest(), root=False)
    dest.put_manifest(RawManifest(index.raw, index.media_type), root=True)
    dest.commit()
    assert store.prune().removed == []
    assert set(store.blobs) == {index.digest, image.doc.digest, *image.blobs}


def test_prune_waits_for_images_being_written(store_root):
    store = Store(store_root)
    copy_by_hand(sample_image(), store.destination(parse("other")))
    image = sample_image({"new": b"pull in progress"})
    dest = store.destination(parse("incoming"))
    for desc in image.doc.blobs:
        dest.put_blob(desc, image.open_blob(desc))  # blobs present, not named yet

    with pytest.raises(StoreError, match="busy"):
        store.prune(wait=False)
    waiting = threading.Thread(target=store.prune)  # blocks until the lease ends
    waiting.start()
    dest.put_manifest(image.root_manifest(), root=True)
    dest.commit()
    waiting.join()
    assert store.source(parse("incoming")).root_manifest().data == image.doc.raw
    assert set(image.blobs) <= set(store.blobs)


def test_abandoned_destination_releases_its_lease(store_root):
    store = Store(store_root)
    image = sample_image()
    dest = store.destination(parse("x"))
    dest.put_blob(image.doc.config, image.open_blob(image.doc.config))
    dest.abort()
    assert store.prune(wait=False).removed == [image.doc.config.digest]
    with store.destination(parse("y")):
        pass
    store.prune(wait=False)


def test_prune_removes_temp_files_of_killed_writers(store_root):
    store = Store(store_root)
    copy_by_hand(sample_image(), store.destination(parse("x")))
    (store_root / "tmp" / ".tmp-deadbeef-1").write_bytes(b"partial")
    result = store.prune()
    assert result.temps == 1
    assert not any(is_temp(p.name) for p in store_root.rglob("*"))


def test_prune_refuses_to_guess_when_a_manifest_is_unreadable(store_root):
    store = Store(store_root)
    image = sample_image()
    copy_by_hand(image, store.destination(parse("x")))
    store.blobs.path(image.doc.digest).write_bytes(b"garbage")
    with pytest.raises(StoreError, match=f"cannot prune.*{image.doc.digest}"):
        store.prune()
    assert set(image.blobs) <= set(store.blobs)


def test_prune_of_a_missing_store_is_a_no_op(tmp_path):
    assert Store(tmp_path / "none").prune().removed == []
    assert not (tmp_path / "none").exists()
