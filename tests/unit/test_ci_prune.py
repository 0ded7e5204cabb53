"""``dockyard ci prune``: old runs and unused caches go; what runs in progress hold stays."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from dockyard.ci.caches import CACHE_DIR, cache_dir, cache_name
from dockyard.ci.prune import prune
from dockyard.ci.runs import HOLDS_DIR, RUNS_DIR, RunDir, run_ids
from dockyard.runtime.snapshots import Snapshots
from dockyard.store import Store
from dockyard.store.holds import Hold

DAY = 86400.0


def make_store(tmp_path) -> Store:
    store = Store(tmp_path / "store")
    store.layout.ensure()
    return store


def make_run(store: Store, run_id: str) -> RunDir:
    run = RunDir(store.root / RUNS_DIR / run_id)
    run.step_log("test").parent.mkdir(parents=True, exist_ok=True)
    run.step_log("test").write_text("output\n")
    run.write_record({"id": run_id, "status": "success"})
    return run


def hold_and_die(store: Store, name: str) -> None:
    """Hold ``name`` from a process that is then killed, as a killed run would."""
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from dockyard.store.holds import Hold\n"
        "hold = Hold(Path(sys.argv[1]))\n"
        "hold.add([sys.argv[2]])\n"
        "os.kill(os.getpid(), 9)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code, str(store.root / HOLDS_DIR), name], env=env)
    assert done.returncode == -9


def test_all_but_the_newest_runs_go_unless_held(tmp_path):
    store = make_store(tmp_path)
    ids = [f"20260101-00000{n}-abcd" for n in range(5)]
    for run_id in ids:
        make_run(store, run_id)
    live = Hold(store.root / HOLDS_DIR)
    live.add([ids[1]])
    hold_and_die(store, ids[2])
    result = prune(store, keep=2)
    assert result.runs == [ids[0], ids[2]]
    assert result.freed > 0
    assert run_ids(store.root) == [ids[1], ids[3], ids[4]]
    assert sorted(os.listdir(store.root / RUNS_DIR)) == run_ids(store.root)  # no trash
    live.release()
    assert prune(store, keep=0).runs == [ids[1], ids[3], ids[4]]
    assert os.listdir(store.root / RUNS_DIR) == []


def test_caches_go_only_when_asked_and_unused_for_long_enough(tmp_path):
    store = make_store(tmp_path)
    fresh = cache_dir(store.root, "pipeline", "/root/.cache/fresh")
    stale = cache_dir(store.root, "pipeline", "/root/.cache/stale")
    held = cache_dir(store.root, "pipeline", "/root/.cache/held")
    (stale / "data").write_text("x" * 1000)
    long_ago = time.time() - 2 * DAY
    for directory in (stale, held):
        os.utime(directory, (long_ago, long_ago))
    hold = Hold(store.root / HOLDS_DIR)
    hold.add([cache_name("pipeline", "/root/.cache/held")])
    assert prune(store).caches == []
    result = prune(store, caches_unused_for=DAY)
    assert result.caches == [stale.name]
    assert result.freed >= 1000
    assert sorted(os.listdir(store.root / CACHE_DIR)) == sorted([fresh.name, held.name])
    hold.release()


def test_a_used_cache_counts_as_fresh(tmp_path):
    store = make_store(tmp_path)
    directory = cache_dir(store.root, "pipeline", "/cache")
    os.utime(directory, (0, 0))
    assert cache_dir(store.root, "pipeline", "/cache") == directory  # a step uses it
    assert prune(store, caches_unused_for=DAY).caches == []


def test_a_killed_prune_is_finished(tmp_path):
    store = make_store(tmp_path)
    for directory in (RUNS_DIR, CACHE_DIR):
        leftover = store.root / directory / ".trash-x-0123"
        (leftover / "sub").mkdir(parents=True)
        (leftover / "sub" / "file").write_text("data")
    assert run_ids(store.root) == []
    result = prune(store)
    assert (result.runs, result.caches, result.freed) == ([], [], 8)
    assert os.listdir(store.root / RUNS_DIR) == os.listdir(store.root / CACHE_DIR) == []


def test_an_empty_store_has_nothing_to_prune(tmp_path):
    assert prune(Store(tmp_path / "none"), keep=0, caches_unused_for=1).runs == []


def test_a_killed_runs_scratch_overlays_are_unmounted_and_go(tmp_path):
    """A run killed while a step ran leaves its rootfs mounted in a scratch dir nobody
    holds; a live run's (held) stays."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    store = make_store(tmp_path)
    snapshots = Snapshots(store)
    with snapshots.scratch() as live:
        dead = store.root / "snapshots" / ".scratch-killed"
        (dead / "merged").mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(dead / "merged")], check=True)
        try:
            (dead / "merged" / "file").write_text("the step's")
            result = prune(store)
            assert not dead.exists()
            assert live.exists()
            assert result.leftovers == 1
        finally:
            if os.path.ismount(dead / "merged"):
                subprocess.run(["umount", str(dead / "merged")], check=True)


def test_abandoned_runs_go_however_new_when_asked(tmp_path):
    """A run whose record says running but whose process is gone (an agent killed
    mid-run), and one with no record nor hold, go; ended and live runs stay."""
    store = make_store(tmp_path)
    ended, killed, unrecorded, live = (f"20260101-00000{n}-abcd" for n in range(4))
    make_run(store, ended)
    make_run(store, killed).write_record({"id": killed, "status": "running", "pid": 2**22 + 1})
    (store.root / RUNS_DIR / unrecorded / "workspace").mkdir(parents=True)
    make_run(store, live).write_record({"id": live, "status": "running", "pid": os.getpid()})
    assert prune(store, keep=10).runs == []
    assert prune(store, keep=10, abandoned=True).runs == [killed, unrecorded]
    assert run_ids(store.root) == [ended, live]
