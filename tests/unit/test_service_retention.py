"""Server-side retention on SQLite and PostgreSQL: ended runs past the policy go with
their logs, steps and artifact rows, and the blobs no artifact names any more; queued
and running runs, and blobs still named or just uploaded, stay."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dockyard.service import queue, retention
from dockyard.service.artifacts import ArtifactStore
from dockyard.service.database import Database, open_engine, sqlite_url
from dockyard.service.models import Artifact, LogChunk, Repository, Run, Step, now
from dockyard.service.retention import Retention


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> Database:
    if request.param == "sqlite":
        return Database(open_engine(sqlite_url(tmp_path)))
    return Database(open_engine(request.getfixturevalue("postgres_database")))


def blob(store: ArtifactStore, content: bytes, age: float = 2 * retention.UPLOAD_GRACE) -> str:
    """A blob of ``content`` in the store, uploaded ``age`` seconds ago; its digest."""
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    path = store.path(digest)
    path.write_bytes(content)
    old = time.time() - age
    os.utime(path, (old, old))
    return digest


def add_runs(db: Database, name: str, statuses: list[str], days_ago: float = 0) -> list[int]:
    """Runs of repository ``name`` (made if missing), oldest first, each with a step and
    a log chunk."""
    with db.transaction() as session:
        repository = session.scalar(select(Repository).where(Repository.name == name))
        if repository is None:
            repository = Repository(name=name, clone_url="file:///x", labels={}, run_count=0)
            session.add(repository)
            session.flush()
        ids = []
        for status in statuses:
            run = queue.enqueue(session, repository, event="manual")
            run.status = status
            if status not in ("queued", "running"):
                run.finished = now() - timedelta(days=days_ago)
            session.add(Step(run_id=run.id, name="s", status="success"))
            session.add(LogChunk(run_id=run.id, attempt=1, lines=[["s", "line", False]]))
            ids.append(run.id)
        return ids


def artifact(db: Database, run_id: int, path: str, digest: str) -> None:
    with db.transaction() as session:
        session.add(Artifact(run_id=run_id, step="s", path=path, digest=digest, size=1))


def left(db: Database) -> tuple[list[int], int, int, int]:
    with db.transaction() as session:
        runs = sorted(session.scalars(select(Run.id)))
        counts = [session.scalar(select(func.count(t.id))) for t in (Step, LogChunk, Artifact)]
        return runs, *counts


def test_ended_runs_beyond_the_newest_n_go_with_what_only_they_name(db, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    a = add_runs(db, "a", ["success", "failure", "success", "error", "running", "queued"])
    b = add_runs(db, "b", ["success"])
    only_first = blob(store, b"only the first run's")
    shared = blob(store, b"the first and the newest run's")
    fresh = blob(store, b"an upload not recorded yet", age=1)
    orphan = blob(store, b"an upload whose record was refused")
    artifact(db, a[0], "x", only_first)
    artifact(db, a[0], "y", shared)
    artifact(db, a[3], "y", shared)

    pruned = retention.apply(db, store, Retention(keep_runs=2))

    # a's newest two ended runs stay, and its running and queued ones; b's one run
    assert left(db) == ([a[2], a[3], a[4], a[5], b[0]], 5, 5, 1)
    assert (pruned.runs, pruned.blobs) == (2, 2)
    assert not store.path(only_first).exists() and not store.path(orphan).exists()
    assert store.path(shared).exists() and store.path(fresh).exists()
    assert retention.apply(db, store, Retention(keep_runs=2)).runs == 0


def test_runs_that_ended_too_long_ago_go_whatever_their_rank(db, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    old = add_runs(db, "a", ["success", "cancelled", "running"], days_ago=10)
    new = add_runs(db, "a", ["failure"], days_ago=1)
    assert retention.apply(db, store, Retention()).runs == 0  # no policy: all stay
    assert retention.apply(db, store, Retention(keep_days=7)).runs == 2
    assert left(db)[0] == [old[2], new[0]]
    both = Retention(keep_runs=5, keep_days=0.5)  # either bound lets a run go
    assert retention.apply(db, store, both).runs == 1
    assert left(db) == ([old[2]], 1, 1, 0)


def test_a_blob_uploaded_again_while_the_pass_looks_is_put_back(tmp_path):
    """The pass found the blob old and unnamed; an upload of the same content then
    renamed a new file into place (and will record it): that file stays."""
    store = ArtifactStore(tmp_path / "artifacts")
    path = store.path(blob(store, b"content"))
    (entry,) = os.scandir(path.parent)
    again = path.with_name(".upload")
    again.write_bytes(b"content")
    os.replace(again, path)
    cutoff = time.time() - retention.UPLOAD_GRACE
    assert retention._take(entry, cutoff) is None
    assert path.read_bytes() == b"content" and os.listdir(path.parent) == [path.name]
    os.utime(path, (cutoff - 1, cutoff - 1))
    (entry,) = os.scandir(path.parent)
    assert retention._take(entry, cutoff) == len(b"content")
    assert os.listdir(path.parent) == []


def test_a_blob_uploaded_twice_while_the_pass_looks_is_put_back(tmp_path):
    """Two uploads of the same content between the scan and the take: the second's
    file may get the first's freed inode number (ext4 reuses it at once), so the inode
    alone would pass it for the old blob."""
    store = ArtifactStore(tmp_path / "artifacts")
    path = store.path(blob(store, b"content"))
    (entry,) = os.scandir(path.parent)
    entry.stat(follow_symlinks=False)  # as the pass has it: cached at the scan
    for _ in range(2):
        again = path.with_name(".upload")
        again.write_bytes(b"content")
        os.replace(again, path)
    assert retention._take(entry, time.time() - retention.UPLOAD_GRACE) is None
    assert path.read_bytes() == b"content"
