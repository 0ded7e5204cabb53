"""Where pipeline runs live in the store, and their records.

::

    <store root>/ci/runs/<run id>/
        run.json              the record: status, steps, durations, tests (see RunResult)
        <step>.log            each step's output, secrets masked
        services/<name>.log   each service's output
        artifacts/<step>/     what the step's ``artifacts`` matched
        workspace/            during the run only
    <store root>/ci/cache/<name>/  cache dirs (see :mod:`.caches`)
    <store root>/ci/holds/         what runs in progress keep from a prune
    <store root>/ci/numbers/<key>  each pipeline's last run number (``CI_RUN_NUMBER``)

A run id is its start time, ``YYYYmmdd-HHMMSS-uuuuuu`` (UTC, microseconds), so ids sort
by start time, also for runs started within one second.
``run.json`` is replaced atomically, each time a step starts or ends (a started step
is listed as ``running``); while a run goes on it says ``running`` and holds the pid of
the process running it, so a run whose process died is told apart. Only the final
record is synced to disk: one lost in a crash before it leaves an older record (or
none), of a run that reads as abandoned either way. Logs are written line by line as
they come (see :mod:`.output`).

While it runs, its process holds the run's id and the names of its caches
(:mod:`dockyard.store.holds`), so that ``dockyard ci prune`` (:mod:`.prune`) deletes
neither under it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard.errors import NotFound
from dockyard.files import atomic
from dockyard.files.locking import FileLock
from dockyard.frozen import Frozen
from dockyard.store import Store
from dockyard.store.dirs import PIPELINE_HOLDS_DIR as HOLDS_DIR
from dockyard.store.dirs import PIPELINE_RUNS_DIR as RUNS_DIR
from dockyard.store.holds import Hold, held_names

NUMBERS_DIR = Path("ci") / "numbers"
RECORD = "run.json"
RUNNING = "running"
STARTING = "starting"  # said of a run whose process lives but has written no record yet
ABANDONED = "abandoned"  # said of a running record whose process is gone


class RunDir(Frozen):
    """The directory of one run."""

    __slots__ = ("path",)
    path: Path

    def __init__(self, path: Path):
        self._set(path=path)

    @property
    def id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, store_root: Path, claim: Callable[[str], None] | None = None) -> RunDir:
        """A new, empty run directory with a fresh id; ``claim`` is given each id tried
        before its directory is made."""
        runs = store_root / RUNS_DIR
        runs.mkdir(parents=True, exist_ok=True)
        while True:
            run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
            if claim is not None:
                claim(run_id)
            try:
                (runs / run_id).mkdir()
            except FileExistsError:
                continue
            return cls(runs / run_id)

    @classmethod
    def create_held(cls, store: Store, hold: Hold, caches: Iterable[str] = ()) -> RunDir:
        """:meth:`create`, holding the new run and its ``caches`` under the store's lease.

        The new run's id and the names of the ``caches`` it will use are added to ``hold`` under the
        lease: a prune then either sees them held or ran entirely before they existed. The id is
        held before its directory is made, so a reader that sees the run sees it held (starting,
        never abandoned). An id another run took in the same microsecond stays held with this
        one, as if this run held it: while this one lives, that run is spared by prunes and, if
        it died before its first record, reads as starting rather than abandoned."""
        with store.lease():
            return cls.create(store.root, claim=lambda run_id: hold.add([run_id, *caches]))

    @classmethod
    def find(cls, store_root: Path, run_id: str) -> RunDir:
        """The run ``run_id``, or the one run whose id starts with it.

        ``last`` is the newest run."""
        ids = run_ids(store_root)
        if run_id == "last" and ids:
            return cls(store_root / RUNS_DIR / ids[-1])
        matches = [i for i in ids if i == run_id] or [i for i in ids if i.startswith(run_id)]
        if len(matches) != 1:
            problem = "no run" if not matches else f"{len(matches)} runs"
            raise NotFound(f"{problem} with id {run_id!r} in {store_root / RUNS_DIR}")
        return cls(store_root / RUNS_DIR / matches[0])

    @property
    def workspace(self) -> Path:
        return self.path / "workspace"

    def step_log(self, step: str) -> Path:
        return self.path / f"{step}.log"

    def service_log(self, service: str) -> Path:
        return self.path / "services" / f"{service}.log"

    def artifacts(self, step: str) -> Path:
        return self.path / "artifacts" / step

    def write_record(self, record: dict[str, Any], *, durable: bool = True) -> None:
        """Replace the record atomically; synced to disk if ``durable`` (the final one)."""
        data = json.dumps(record, indent=2).encode() + b"\n"
        atomic.write_bytes(self.path / RECORD, data, durable=durable)

    def read_record(self) -> dict[str, Any]:
        """The record, its ``status`` corrected by whether the run's process still lives.

        ``status`` is ``abandoned`` if the record says running but its process is gone; ``starting``
        if there is none yet but its process holds it (a run is visible from its first moment,
        before its record is written)."""
        try:
            record = json.loads((self.path / RECORD).read_text())
        except (OSError, ValueError):
            store_root = self.path.parent.parent.parent
            held = self.id in held_names(store_root / HOLDS_DIR)
            return {"id": self.id, "status": STARTING if held else ABANDONED, "steps": []}
        if record.get("status") == RUNNING and not _alive(record.get("pid")):
            record["status"] = ABANDONED
        return record


def next_run_number(store_root: Path, pipeline_key: str) -> int:
    """The number of the pipeline ``pipeline_key``'s next run: 1, 2, ... counted per pipeline.

    As GitLab's ``CI_PIPELINE_IID``, under a lock, so that runs started at once get different
    numbers; a prune does not reset it."""
    directory = store_root / NUMBERS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / hashlib.sha256(pipeline_key.encode()).hexdigest()[:32]
    with FileLock(path.with_suffix(".lock")):
        try:
            number = int(path.read_text()) + 1
        except (FileNotFoundError, ValueError):
            number = 1
        atomic.write_bytes(path, f"{number}\n".encode())
    return number


def run_ids(store_root: Path) -> list[str]:
    """The ids of every run in the store, oldest first."""
    try:
        return sorted(
            p.name
            for p in (store_root / RUNS_DIR).iterdir()
            if p.is_dir() and not p.name.startswith(".")  # not a run being deleted
        )
    except FileNotFoundError:
        return []


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
