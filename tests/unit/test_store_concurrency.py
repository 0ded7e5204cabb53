"""Several processes on one store root at once, and a writer killed mid-blob."""

import json
import multiprocessing

from dockyard.files.atomic import is_temp
from dockyard.reference import parse
from dockyard.store import Store
from tests.killing import StallingReader, killed_when_ready
from tests.support.sample_images import copy_by_hand, sample_image

TAGS_PER_WORKER = 20


def _pull_many(root, worker, barrier):
    """What a `dockyard pull` does to the store, many times over, with its own image."""
    store = Store(root)
    image = sample_image({"shared": b"base layer"}, {"own": f"worker {worker}".encode()})
    barrier.wait()
    for i in range(TAGS_PER_WORKER):
        copy_by_hand(image, store.destination(parse(f"example.com/w{worker}:t{i}")))


def test_concurrent_pulls_keep_every_tag(store_root):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(3)
    workers = [ctx.Process(target=_pull_many, args=(store_root, w, barrier)) for w in range(3)]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    assert [p.exitcode for p in workers] == [0, 0, 0]

    json.loads((store_root / "index.json").read_text())  # whole, valid JSON
    names = {str(info.ref) for info in Store(store_root).images()}
    assert names == {f"example.com/w{w}:t{i}" for w in range(3) for i in range(TAGS_PER_WORKER)}
    assert not any(is_temp(p.name) for p in store_root.rglob("*"))


def _pull_until_killed(root, ready_fd):
    image = sample_image({"big": b"x" * 100_000}, compression=None)
    layer = image.doc.layers[0]
    stream = StallingReader(image.blobs[layer.digest], ready_fd)
    Store(root).destination(parse("killed")).put_blob(layer, stream)


def test_writer_killed_mid_blob_leaves_no_corrupt_blob(store_root):
    with killed_when_ready(_pull_until_killed, store_root):
        pass

    store = Store(store_root)
    image = sample_image({"big": b"x" * 100_000}, compression=None)
    layer = image.doc.layers[0]
    assert [is_temp(p.name) for p in (store_root / "tmp").iterdir()] == [True]
    assert not store.blobs.has(layer.digest) and list(store.blobs) == []

    copy_by_hand(image, store.destination(parse("retried")))
    assert store.blobs.read_bytes(layer.digest) == image.blobs[layer.digest]
    result = store.prune(wait=False)  # the dead writer's lease died with it
    assert result.temps == 1 and result.removed == []
