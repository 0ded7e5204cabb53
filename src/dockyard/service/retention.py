"""Server-side retention: old ended runs go, and the artifact blobs no run refers to.

A run goes, with its logs, steps and artifacts, when it has ended and either policy
says so: it is not among its repository's newest ``keep_runs`` ended runs, or it ended
more than ``keep_days`` ago (as Jenkins' "discard old builds"). Queued and running runs
are never touched, whatever their age. Runs go in batches of :data:`BATCH`, each in one
short transaction.

A blob goes when no artifact row names its digest and it is older than
:data:`UPLOAD_GRACE`: an upload renames a new file into place (a fresh mtime and inode,
even for content already there) before it records the row. The pass renames the old
file away first and deletes it only if it is still the inode it found old: one an
upload put there meanwhile is put back, so a blob being uploaded is never taken.

The server runs :func:`apply` every :data:`EVERY` seconds (:mod:`.api`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from dockyard.files.atomic import remove_stale_temps
from dockyard.service.artifacts import ArtifactStore
from dockyard.service.database import Database
from dockyard.service.models import FINISHED, Artifact, LogChunk, Run, Step, now

EVERY = 600.0  # seconds between two passes
BATCH = 500  # runs deleted per transaction
UPLOAD_GRACE = 3600.0  # seconds an unreferenced blob is kept (an upload in flight)


@dataclass(frozen=True)
class Retention:
    """How long ended runs are kept.

    The newest ``keep_runs`` of each repository, and those ended less than ``keep_days``
    ago (None: no such bound).
    """

    keep_runs: int | None = None
    keep_days: float | None = None

    @property
    def active(self) -> bool:
        return self.keep_runs is not None or self.keep_days is not None


@dataclass
class Pruned:
    """What a pass deleted."""

    runs: int = 0
    blobs: int = 0
    freed: int = 0  # bytes of blobs


def apply(db: Database, store: ArtifactStore, policy: Retention) -> Pruned:
    """Delete the ended runs ``policy`` lets go, then the blobs no artifact names."""
    pruned = Pruned()
    while policy.active:
        with db.transaction() as session:
            doomed = _expired(session, policy)
            if not doomed:
                break
            _delete_runs(session, doomed)
        pruned.runs += len(doomed)
    _collect_blobs(db, store, pruned)
    return pruned


def _expired(session: Session, policy: Retention) -> list[int]:
    """Up to :data:`BATCH` ended runs past the policy, oldest first."""
    ended = Run.status.in_(FINISHED)
    reasons = []
    if policy.keep_days is not None:
        cutoff = now() - timedelta(days=policy.keep_days)
        reasons.append(func.coalesce(Run.finished, Run.created) < cutoff)
    if policy.keep_runs is not None:
        rank = (
            func.row_number()
            .over(partition_by=Run.repository_id, order_by=Run.number.desc())
            .label("rank")
        )
        ranked = select(Run.id, rank).where(ended).subquery()
        beyond = select(ranked.c.id).where(ranked.c.rank > policy.keep_runs)
        reasons.append(Run.id.in_(beyond))
    query = select(Run.id).where(ended, or_(*reasons)).order_by(Run.id).limit(BATCH)
    return list(session.scalars(query))


def _delete_runs(session: Session, run_ids: list[int]) -> None:
    for table in (LogChunk, Step, Artifact):
        session.execute(delete(table).where(table.run_id.in_(run_ids)))
    session.execute(delete(Run).where(Run.id.in_(run_ids)))


def _collect_blobs(db: Database, store: ArtifactStore, pruned: Pruned) -> None:
    """Delete the blobs no artifact row names, past the upload grace; and the temp
    files of uploads a killed server left."""
    directory = store.root / "sha256"
    cutoff = time.time() - UPLOAD_GRACE
    with os.scandir(directory) as entries:
        candidates = {
            entry.name: entry
            for entry in entries
            if entry.is_file(follow_symlinks=False)
            and entry.stat(follow_symlinks=False).st_mtime < cutoff
        }
    if candidates:
        with db.transaction() as session:
            named = set(session.scalars(select(Artifact.digest).distinct()))
        for name, entry in candidates.items():
            if f"sha256:{name}" not in named and (size := _take(entry, cutoff)) is not None:
                pruned.blobs += 1
                pruned.freed += size
    remove_stale_temps(store.root, UPLOAD_GRACE)


def _take(entry: os.DirEntry[str], cutoff: float) -> int | None:
    """Delete the blob ``entry`` found, if the file there is still that one; its size.

    "That one" is the same inode *and* modification time, still older than ``cutoff``:
    an upload renames a fresh file into place, and a freed inode number is soon given
    to another file (ext4 reuses it at once), so the inode alone could be a new upload."""
    scanned = entry.stat(follow_symlinks=False)  # cached when the pass scanned
    aside = os.path.join(os.path.dirname(entry.path), f".gc-{entry.name}-{os.getpid()}")
    try:
        os.rename(entry.path, aside)
    except FileNotFoundError:
        return None  # another server's pass took it
    found = os.stat(aside, follow_symlinks=False)
    if (found.st_ino, found.st_mtime_ns) != (scanned.st_ino, scanned.st_mtime_ns) or (
        found.st_mtime >= cutoff
    ):
        os.replace(aside, entry.path)  # an upload's (same content): put it back
        return None
    os.unlink(aside)
    return found.st_size
