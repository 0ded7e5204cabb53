import os
import signal
import threading
import time
from pathlib import Path

import pytest

from dockyard.errors import StoreError
from dockyard.files.atomic import is_temp
from dockyard.files.blobdir import STALE_TEMP_SECONDS
from dockyard.files.locking import FileLock
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.oci.digest import hex_part
from dockyard.reference import parse
from dockyard.runtime.snapshots import Snapshots
from dockyard.store import Store
from tests.killing import killed_when_ready
from tests.support.sample_images import copy_by_hand, put_indexed, sample_image
from tests.support.snapshots import snapshot, stored_with_snapshots


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
    index = put_indexed(image, store.destination(parse("multi")), [child])
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


# -- snapshots: the layers' extracted dirs, kept for named images and live holders ---------


def entries(store: Store) -> list[str]:
    return sorted(p.name for p in (store.root / "snapshots").iterdir())


def test_snapshot_prune_after_rmi_keeps_the_layers_another_image_shares(store_root):
    store = Store(store_root)
    kept = stored_with_snapshots(store, "kept", {"k": b"keep"})
    gone = stored_with_snapshots(store, "gone", {"k": b"keep"}, {"d": b"12345"}, {"e": b"678"})
    assert gone[0] == kept[0]
    store.untag(parse("gone"))

    result = Snapshots(store).prune()
    assert sorted(result.removed) == sorted(gone[1:])
    assert result.freed == len(b"12345678") and result.temps == 0
    assert entries(store) == [".locks", hex_part(kept[0])]
    assert list((store_root / "snapshots/.locks").iterdir()) == []
    assert Snapshots(store).prune().removed == []


def test_snapshot_prune_keeps_every_platform_of_an_index(store_root):
    store = Store(store_root)
    image = sample_image({"a": b"amd64"})
    child = Descriptor(
        image.doc.media_type, image.doc.digest, len(image.doc.raw), platform=Platform.host()
    )
    put_indexed(image, store.destination(parse("multi")), [child])
    snapshots = Snapshots(store)
    snapshot(snapshots, image.diff_ids[0], {"a": b"amd64"})
    snapshot(snapshots, "sha256:" + "e" * 64, {"stray": b"no image has me"})

    assert Snapshots(store).prune().removed == ["sha256:" + "e" * 64]
    assert snapshots.exists(image.diff_ids[0])


def test_held_snapshots_are_spared_until_their_holder_lets_go(store_root):
    store = Store(store_root)
    chains = stored_with_snapshots(store, "x", {"a": b"1"}, {"b": b"2"})
    holder = Snapshots(store)
    assert holder.lowers(chains) == [holder.path(c) for c in reversed(chains)]
    store.untag(parse("x"))

    assert Snapshots(store).prune().removed == []
    assert all(holder.exists(c) for c in chains)
    holder.close()
    assert sorted(Snapshots(store).prune().removed) == sorted(chains)
    assert entries(store) == [".holds", ".locks"]
    assert list((store_root / "snapshots/.holds").iterdir()) == []


def test_a_held_scratch_dir_is_spared_and_an_abandoned_one_reaped(store_root):
    store = Store(store_root)
    abandoned = store_root / "snapshots/.scratch-killed"
    (abandoned / "upper/etc").mkdir(parents=True)
    (abandoned / "upper/etc/f").write_bytes(b"written by a killed build")
    (abandoned / "work/work").mkdir(parents=True)
    (abandoned / "work/work").chmod(0)  # as overlayfs leaves it
    with Snapshots(store).scratch() as live:
        (live / "upper").mkdir()
        result = Snapshots(store).prune()
        assert live.is_dir() and not abandoned.exists()
    assert result.temps == 1 and result.freed == len(b"written by a killed build")
    assert entries(store) == [".holds", ".locks"]


def test_blobs_per_image_and_what_prune_keeps_are_one_walk(store_root):
    from dockyard.store.gc import blobs_per_root, reachable

    store = Store(store_root)
    one, two = sample_image({"k": b"keep"}), sample_image({"k": b"keep"}, {"m": b"more"})
    copy_by_hand(one, store.destination(parse("one")))
    copy_by_hand(two, store.destination(parse("two")))
    other = Descriptor.of_bytes(two.doc.media_type, b"{}", platform=Platform("linux", "arm64"))
    child = two.doc.descriptor(platform=Platform("linux", "amd64"))
    index = put_indexed(two, store.destination(parse("multi")), [child, other])
    per_image = blobs_per_root(store.layout)
    assert per_image[:2] == [
        {one.doc.digest, *(d.digest for d in one.doc.blobs)},
        {two.doc.digest, *(d.digest for d in two.doc.blobs)},
    ]
    assert per_image[2] == {index.digest, *per_image[1]}  # arm64 was never pulled
    assert reachable(store.layout) == set().union(*per_image)
    (store.layout.blobs.path(two.doc.layers[1].digest)).unlink()  # lost
    assert two.doc.layers[1].digest not in blobs_per_root(store.layout)[1]  # not counted
    assert two.doc.layers[1].digest in reachable(store.layout)  # named still


def test_reaping_scratch_dirs_alone_spares_what_prune_spares(store_root):
    store = Store(store_root)
    copy_by_hand(sample_image(), store.destination(parse("x")))
    unnamed = store_root / "snapshots" / ("a" * 64)  # prune's, not reap_scratch's
    unnamed.mkdir(parents=True)
    abandoned = store_root / "snapshots/.scratch-killed"
    (abandoned / "upper").mkdir(parents=True)
    with Snapshots(store).scratch() as live:
        assert Snapshots(store).reap_scratch() == 1
        assert live.is_dir() and not abandoned.exists() and unnamed.is_dir()
        assert Snapshots(store).reap_scratch() == 0


def test_a_snapshot_being_made_is_spared(store_root):
    store = Store(store_root)
    copy_by_hand(sample_image(), store.destination(parse("x")))
    snapshots = Snapshots(store)
    chain = "sha256:" + "a" * 64
    snapshot(snapshots, chain, {"f": b"made"})
    temp = store_root / "snapshots" / f".tmp-{'b' * 64}-x1"
    temp.mkdir()
    (temp / "half").write_bytes(b"extracting")
    (store_root / "snapshots/.locks").mkdir()
    making = [FileLock(store_root / "snapshots/.locks" / n) for n in ("a" * 64, "b" * 64)]
    for lock in making:
        lock.acquire()
    try:
        result = Snapshots(store).prune()
        assert result.removed == [] and result.temps == 0
        assert snapshots.exists(chain) and temp.is_dir()
    finally:
        for lock in making:
            lock.release()
    result = Snapshots(store).prune()
    assert result.removed == [chain] and result.temps == 1
    assert result.freed == len(b"made") + len(b"extracting")
    assert entries(store) == [".locks"]


def test_prune_finishes_a_killed_prune_and_reaps_dead_holds(store_root):
    store = Store(store_root)
    copy_by_hand(sample_image(), store.destination(parse("x")))
    half_deleted = store_root / "snapshots/.trash-" / "deep"
    half_deleted.mkdir(parents=True)
    (half_deleted / "rest").write_bytes(b"123")
    (store_root / "snapshots/.holds").mkdir()
    (store_root / "snapshots/.holds/4242-dead").write_text("a" * 64 + "\n")  # nobody locks it
    snapshot(Snapshots(store), "sha256:" + "a" * 64, {"f": b"x"})

    result = Snapshots(store).prune()
    assert result.removed == ["sha256:" + "a" * 64] and result.temps == 1
    assert result.freed == len(b"123x")
    assert entries(store) == [".holds", ".locks"]
    assert list((store_root / "snapshots/.holds").iterdir()) == []


def _hold_until_killed(root: Path, chains: list[str], ready_fd: int) -> None:
    snapshots = Snapshots(Store(root))
    snapshots.lowers(chains)
    os.write(ready_fd, b"1")
    signal.pause()  # the parent kills us here


def test_a_killed_holder_holds_nothing(store_root):
    store = Store(store_root)
    chains = stored_with_snapshots(store, "x", {"a": b"1"})
    store.untag(parse("x"))
    with killed_when_ready(_hold_until_killed, store_root, chains):
        assert Snapshots(store).prune().removed == []
    assert Snapshots(store).prune().removed == chains
    assert list((store_root / "snapshots/.holds").iterdir()) == []


def test_prune_reaps_old_work_dirs_in_the_store_tmp_dir(store_root):
    store = Store(store_root)
    copy_by_hand(sample_image(), store.destination(parse("x")))
    old, fresh = store_root / "tmp/tmp-old-secrets", store_root / "tmp/tmp-running"
    for directory in (old, fresh):
        directory.mkdir()
        (directory / "secret").write_bytes(b"s3cret")
    day_and_a_bit = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(old, (day_and_a_bit, day_and_a_bit))

    result = store.prune()
    assert result.temps == 1 and result.freed == len(b"s3cret")
    assert not old.exists() and (fresh / "secret").exists()


def test_prune_spares_blobs_a_live_process_holds(tmp_path):
    """A build's layers are named only at its end; its blob hold keeps them till then."""
    store = Store(tmp_path / "store")
    hold = store.blob_hold()
    with store.lease():
        held = store.blobs.write_bytes(b"a layer no image names yet")
        hold.add([held])
        loose = store.blobs.write_bytes(b"garbage")
    assert store.prune().removed == [loose]
    assert store.blobs.has(held)
    hold.release()
    assert store.prune().removed == [held]
