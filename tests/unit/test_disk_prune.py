"""``dockyard df`` and ``dockyard prune`` policies on a real store: a store filled to
2x a ``--keep-storage`` budget comes back under it keeping the most recently used, and
nothing a live build, container or pipeline holds is deleted."""

from __future__ import annotations

import io
import json
import os
import time

from dockyard.builder.cache import BuildCache, CacheRecord
from dockyard.containers.catalog import LOCK_FILE, Catalog
from dockyard.disk.autogc import AutoGC
from dockyard.disk.prune import PrunePolicy, plan
from dockyard.disk.usage import Item, Usage, take_stock
from dockyard.files.locking import FileLock
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.runtime.snapshots import Snapshots
from dockyard.store import Store
from dockyard.store.holds import Hold
from tests.conftest import Dockyard
from tests.unit.check_images import F, layer, store_image

MB = 1_000_000
DAY = 86400.0


def cached_layer(store: Store, key: str, size: int, age_days: float) -> Descriptor:
    """A build cache record naming a layer blob of ``size`` random bytes (which only the
    record names), last used ``age_days`` ago."""
    data = os.urandom(size)
    desc = Descriptor.of_bytes(mt.OCI_LAYER_GZIP, data)
    with store.lease():
        store.blobs.write(desc.digest, io.BytesIO(data), desc.size)
    cache = BuildCache(store.root)
    cache.put(CacheRecord(key, desc, "sha256:" + "0" * 64))
    when = time.time() - age_days * DAY
    os.utime(cache.directory / key, (when, when))
    return desc


def test_plan_lru_until_and_filters():
    now = 1000 * DAY
    items = [
        Item("images", "img", 100, now, reclaimable=False),
        Item("blobs", "junk", 5, now),
        Item("build-cache", "old", 40, now - 9 * DAY, blob="sha256:a"),
        Item("build-cache", "mid", 30, now - 5 * DAY, blob="sha256:b"),
        Item("cache-mounts", "apt", 20, now - 2 * DAY),
        Item("pipeline-caches", "pip", 10, now - 1 * DAY),
    ]
    usage = Usage(items)

    def names(policy):
        return [item.name for item in plan(usage, policy, now)]

    assert names(PrunePolicy()) == ["junk", "old", "mid"]  # a bare prune: garbage, cache
    assert names(PrunePolicy(until=3 * DAY)) == ["junk", "old", "mid"]
    assert names(PrunePolicy(keep_storage=160)) == ["junk", "old"]  # 205 - 45 <= 160
    assert names(PrunePolicy(keep_storage=100)) == ["junk", "old", "mid", "apt", "pip"]
    assert names(PrunePolicy(frozenset({"cache-mounts"}))) == ["apt"]
    assert names(PrunePolicy(frozenset({"pipeline-caches"}), until=0.5 * DAY)) == ["pip"]


def test_keep_storage_brings_a_full_store_under_budget_keeping_the_newest(store_root):
    store = Store(store_root)
    image = store_image(store_root, "localhost/t/named:1", [layer(F("/big", os.urandom(MB)))])
    layers = {f"k{age}": cached_layer(store, f"k{age}", MB, age) for age in range(1, 9)}
    held = cached_layer(store, "held", MB, 30)  # the oldest, but a running build uses it
    hold = store.blob_hold()
    with store.lease():
        hold.add([held.digest])
    total = take_stock(store).total
    budget = total // 2
    dockyard = Dockyard(store_root)
    dry = dockyard("prune", "--dry-run", "--keep-storage", str(budget)).stdout.decode()
    assert "would remove build-cache held " in dry  # the plan cannot know; the prune does
    assert all(store.blobs.has(desc.digest) for desc in layers.values())  # dry: nothing went
    out = dockyard("prune", "--keep-storage", str(budget)).stdout.decode()
    assert "build-cache: removed " in out
    after = take_stock(store)
    assert after.total <= budget + MB  # under, but for the held layer the plan counted
    kept = {item.name for item in after.of("build-cache")}
    assert kept and kept == {f"k{age}" for age in range(1, len(kept) + 1)}  # the newest
    assert len(kept) < len(layers)
    assert store.blobs.has(held.digest)  # held: only its record went
    assert dockyard("export", image, str(store_root.parent / "rootfs")).returncode == 0
    hold.release()


def test_plain_prune_still_takes_every_cache_layer_no_image_has(store_root):
    store = Store(store_root)
    desc = cached_layer(store, "k", 1000, 0)
    Dockyard(store_root)("prune")
    assert not store.blobs.has(desc.digest)
    assert not (BuildCache(store_root).directory / "k").exists()


def test_cache_mounts_and_pipelines_are_spared_while_in_use(store_root):
    store = Store(store_root)
    store.layout.ensure()
    mount = store_root / "build/cache-mounts/apt"
    run = store_root / "ci/runs/20260101-000000-abc"
    for directory in (mount, run):
        directory.mkdir(parents=True)
        (directory / "data").write_bytes(b"x" * 5000)
        old = time.time() - 10 * DAY
        for path in (directory / "data", directory):  # last written 10 days ago
            os.utime(path, (old, old))
    building = Hold(store_root / "snapshots/.holds")  # as a running build's snapshots
    with store.lease():
        building.add(["0" * 64])
    running = Hold(store_root / "ci/holds")
    with store.lease():
        running.add([run.name])
    dockyard = Dockyard(store_root)
    out = dockyard("prune", "--until", "7d").stdout.decode()
    assert "kept cache-mounts apt: in use" in out and "kept pipeline-runs" in out
    assert mount.is_dir() and run.is_dir()
    building.release()
    running.release()
    out = dockyard("prune", "--until", "7d").stdout.decode()
    assert "cache-mounts: removed 1, 5.0 kB" in out and "pipeline-runs: removed 1" in out
    assert not mount.exists() and not run.exists()


def test_df_shared_unique_and_json(store_root):
    base = [layer(F("/base", os.urandom(20_000)))]
    store_image(store_root, "localhost/t/a:1", [*base, layer(F("/a", b"a" * 10))])
    store_image(store_root, "localhost/t/b:1", [*base, layer(F("/b", b"b" * 10))])
    cached_layer(Store(store_root), "k", 3000, 1)
    dockyard = Dockyard(store_root)
    doc = json.loads(dockyard("df", "--format", "json").stdout)
    kinds = {row["kind"]: row for row in doc["kinds"]}
    assert kinds["images"]["items"] == 7  # 2 manifests, 2 configs, 3 layers
    assert 20_000 < kinds["images"]["shared"] < 21_000  # the shared base layer
    assert kinds["images"]["reclaimable"] == 0
    assert kinds["build-cache"]["size"] > 3000 and kinds["build-cache"]["reclaimable"] > 3000
    text = dockyard("df").stdout.decode().splitlines()
    assert text[0].split() == ["KIND", "ITEMS", "SIZE", "SHARED", "UNIQUE", "RECLAIMABLE"]
    assert text[1].startswith("images ")


def test_bad_prune_flags_are_one_line_errors(store_root):
    dockyard = Dockyard(store_root)
    bad = dockyard("prune", "--filter", "type=images", check=False)
    assert bad.returncode != 0 and b"type=KIND" in bad.stderr
    bad = dockyard("prune", "--until", "soon", check=False)
    assert bad.returncode != 0 and b"invalid duration 'soon'" in bad.stderr


def test_prune_containers_takes_stopped_ones_only_and_df_counts_them(store_root):
    store = Store(store_root)
    store.layout.ensure()
    catalog = Catalog(store)
    with Snapshots(store) as snapshots:
        stopped = catalog.create(snapshots, "scratch", None, name="stopped")
        busy = catalog.create(snapshots, "scratch", None, name="busy")
    for container in (stopped, busy):
        (container.upper / "work.bin").write_bytes(os.urandom(50_000))
    running = FileLock(busy.path / LOCK_FILE)  # as a `container run` holds it
    assert running.acquire(blocking=False)
    dockyard = Dockyard(store_root)
    doc = json.loads(dockyard("df", "--format", "json").stdout)
    row = {row["kind"]: row for row in doc["kinds"]}["containers"]
    assert row["items"] == 2 and row["size"] >= 100_000
    assert 50_000 <= row["reclaimable"] < 100_000  # the busy one is not
    dockyard("prune")
    dockyard("prune", "--keep-storage", "1")  # a policy alone never takes containers
    assert stopped.path.is_dir() and busy.path.is_dir()
    dry = dockyard("prune", "--containers", "--dry-run").stdout.decode()
    assert "would remove containers stopped " in dry and "containers busy" not in dry
    assert stopped.path.is_dir()
    out = dockyard("prune", "--until", "7d", "--containers").stdout.decode()
    assert "containers" not in out and stopped.path.is_dir()  # written just now
    out = dockyard("prune", "--filter", "type=containers").stdout.decode()
    assert "containers: removed 1" in out
    assert not stopped.path.exists() and busy.path.is_dir()
    assert [c.name for c in catalog.list()] == ["busy"]
    running.release()
    out = dockyard("prune", "--containers").stdout.decode()
    assert "containers: removed 1" in out and catalog.list() == []


def test_auto_gc_brings_a_store_past_its_threshold_back_under(store_root):
    store = Store(store_root)
    store_image(store_root, "localhost/t/named:1", [layer(F("/big", os.urandom(MB)))])
    for age in range(1, 9):
        cached_layer(store, f"k{age}", MB, age)
    threshold = take_stock(store).total // 2
    gc = AutoGC(store_root, threshold)
    report = gc.after_run()
    assert report is not None and report.freed["build-cache"] >= 4 * MB
    after = take_stock(store)
    assert after.total <= threshold
    kept = {item.name for item in after.of("build-cache")}
    assert kept == {f"k{age}" for age in range(1, len(kept) + 1)}  # the newest stay
    assert after.of("images")  # named: never collected
    assert gc.after_run() is None  # under the threshold: nothing to do
