"""The build cache's records: written once, never replaced by a different layer; written
without an fsync, distrusted after a crash."""

from __future__ import annotations

import threading

from dockyard.builder.cache import BuildCache, CacheRecord, prune_build_records
from dockyard.builder.context import BuildContext, ContextIndex
from dockyard.builder.durability import UNSYNCED_DIR
from dockyard.builder.lineage import LastRun, StepLineage
from dockyard.layers import PackedLayer
from dockyard.oci.descriptor import Descriptor
from dockyard.store import Store

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def record(key: str, n: int) -> CacheRecord:
    digest = f"sha256:{n:064x}"
    return CacheRecord(key, Descriptor(LAYER, digest, 100 + n), f"sha256:{n + 1000:064x}")


def stored(tmp_path, key: str) -> CacheRecord | None:
    found = BuildCache(tmp_path).get(key)
    return found[0] if found else None


def test_a_no_cache_build_never_replaces_a_record_with_another_layer(tmp_path):
    """A --no-cache build re-executes a step and puts its new layer: the record that
    other images' cached builds rely on stays, so their digests do not change."""
    BuildCache(tmp_path).put(record("k", 1))
    again = BuildCache(tmp_path)
    again.put(record("k", 2))
    assert stored(tmp_path, "k") == record("k", 1)
    assert again.used["k"] == record("k", 2)  # what this build made (for --cache-to)
    BuildCache(tmp_path).put(record("new", 3))  # new keys are still added
    assert stored(tmp_path, "new") == record("new", 3)


def test_a_damaged_record_is_replaced(tmp_path):
    cache = BuildCache(tmp_path)
    cache.directory.mkdir(parents=True)
    (cache.directory / "k").write_text('{"layer": {"mediaType": 1}')
    cache.put(record("k", 1))
    assert stored(tmp_path, "k") == record("k", 1)


def test_of_builds_writing_one_key_at_once_the_first_wins_for_good(tmp_path):
    """Threads put different layers for the same keys at once: each key ends with one
    record, the first written, never replaced afterwards, and no temp files stay."""
    keys = [f"key{i}" for i in range(50)]
    first: dict[str, CacheRecord] = {}
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        cache = BuildCache(tmp_path)
        start.wait()
        for key in keys:
            cache.put(record(key, n))
            first.setdefault(key, stored(tmp_path, key))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for key in keys:
        assert stored(tmp_path, key) == first[key]
    names = [p.name for p in BuildCache(tmp_path).directory.iterdir()]
    assert sorted(names) == sorted(keys)


def crashed(store_root, kind: str, name: str) -> None:
    """What a crash leaves of a record written unsynced: its marker names another boot
    (the record's bytes may be anything: here they still parse)."""
    marker = store_root / UNSYNCED_DIR / kind / name
    assert marker.read_text()  # written unsynced: marked in this boot
    marker.write_text("f00dfeed-0000-4000-8000-000000000000")


def test_a_record_unsynced_in_a_previous_boot_is_not_trusted_but_made_again(tmp_path):
    """Records are renamed into place without an fsync; after a crash one whose marker
    says another boot may be torn or stale: a miss (the step runs again), and the record
    the step puts then replaces it, even naming another layer."""
    BuildCache(tmp_path).put(record("k", 1))
    crashed(tmp_path, "cache", "k")
    assert stored(tmp_path, "k") is None
    BuildCache(tmp_path).put(record("k", 2))
    assert stored(tmp_path, "k") == record("k", 2)
    assert BuildCache(tmp_path).prune(lambda digest: True) == 0  # trusted again: kept


def test_prune_drops_a_distrusted_record(tmp_path):
    BuildCache(tmp_path).put(record("k", 1))
    crashed(tmp_path, "cache", "k")
    assert BuildCache(tmp_path).prune(lambda digest: True) == 1
    assert not (BuildCache(tmp_path).directory / "k").exists()


def test_lineage_and_context_index_unsynced_in_a_previous_boot_are_none(tmp_path, settled_files):
    lineage = StepLineage(tmp_path)
    layer = PackedLayer(f"sha256:{1:064x}", 10, f"sha256:{2:064x}", LAYER)
    lineage.put("step", LastRun(f"sha256:{3:064x}", layer, "inputs"))
    assert lineage.get("step") == LastRun(f"sha256:{3:064x}", layer, "inputs")
    crashed(tmp_path, "lineage", "step")
    assert lineage.get("step") is None

    context = tmp_path / "ctx"
    context.mkdir()
    (context / "f").write_text("x")
    index = ContextIndex(tmp_path, context)
    built = BuildContext(context, index=index)
    built.checksum([""])
    built.save_index()
    assert set(index.load(str(context))) == {"f"}
    crashed(tmp_path, "context-index", index.path.name)
    assert index.load(str(context)) == {}


def test_prune_syncs_records_once_and_drops_their_markers(tmp_path):
    """After a prune's sync the records are on disk: their markers go, so they are
    trusted after a reboot."""
    store = Store(tmp_path / "store")
    BuildCache(store.root).put(record("k", 1))
    markers = store.root / UNSYNCED_DIR / "cache"
    assert [p.name for p in markers.iterdir()] == ["k"]
    prune_build_records(store, lambda chain: True)  # the layer blob is gone: the record too
    assert list(markers.iterdir()) == []
    store.blobs.write_bytes(b"layer")
    kept = CacheRecord("k2", Descriptor.of_bytes(LAYER, b"layer"), f"sha256:{0:064x}")
    BuildCache(store.root).put(kept)
    prune_build_records(store, lambda chain: True)
    assert list(markers.iterdir()) == []
    assert stored(store.root, "k2") == kept
