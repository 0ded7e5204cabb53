"""The build cache's records: written once, never replaced by a different layer."""

from __future__ import annotations

import threading

from dockyard.builder.cache import BuildCache, CacheRecord
from dockyard.oci.descriptor import Descriptor

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
