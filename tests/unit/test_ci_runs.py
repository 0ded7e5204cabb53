"""A run is visible from its first moment: before its record is written, readers (``ci
logs -f`` from another terminal) see it starting, not abandoned, while its process
holds it."""

from __future__ import annotations

from dockyard.ci.runs import ABANDONED, HOLDS_DIR, RUNS_DIR, STARTING, RunDir, run_ids
from dockyard.store import Store
from dockyard.store.holds import Hold


def test_a_held_run_without_a_record_is_starting(tmp_path):
    """Held before it is seen: ``ci logs -f`` reading between the run's mkdir and its hold
    would call it abandoned and stop following it."""
    store = Store(tmp_path / "store")
    seen: list[str] = []

    class Watched(Hold):
        def add(self, names):
            runs = store.root / RUNS_DIR
            seen.extend(RunDir(runs / i).read_record()["status"] for i in run_ids(store.root))
            super().add(names)

    hold = Watched(store.root / HOLDS_DIR)
    try:
        run = RunDir.create_held(store, hold)
        assert run.read_record()["status"] == STARTING
    finally:
        hold.release()
    assert seen == []  # no run was visible while its hold was taken
    assert run.read_record()["status"] == ABANDONED


def test_a_run_without_a_record_nobody_holds_is_abandoned(tmp_path):
    run = RunDir.create(tmp_path / "store")
    assert run.read_record() == {"id": run.id, "status": ABANDONED, "steps": []}
