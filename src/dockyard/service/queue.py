"""The job queue: runs waiting for an agent, leased to one, requeued when it dies.

A queued run is taken by one conditional UPDATE (``... SET status='running' WHERE id=?
AND status='queued'``): of two agents racing for it, one changes a row and the other
none, on SQLite (whose writers are serialised) as on PostgreSQL (which re-checks the
WHERE on the locked row). On PostgreSQL the candidates are read ``FOR UPDATE SKIP
LOCKED``, so concurrent servers do not wait on each other's rows.

A leased run carries ``lease_until``; the agent's heartbeats push it forward. A run
whose lease ran out goes back to the queue once (``MAX_ATTEMPTS``), then is errored
with the reason in its log: a run is never left running forever. An agent that
restarted (a new ``instance`` id) has lost its runs: they go the same way at once.
Either way the steps they left running end failed, with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dockyard.service.database import Database, rowcount
from dockyard.service.models import (
    CANCELLED,
    ERROR,
    FAILURE,
    QUEUED,
    RUNNING,
    Agent,
    LogChunk,
    Repository,
    Run,
    Step,
    now,
)

MAX_ATTEMPTS = 2  # the first agent's, and one more after it died
CANDIDATES = 50  # queued runs looked at per claim, oldest first
AGENT_ALIVE = 15.0  # seconds since its last heartbeat (sent every second) an agent counts


def enqueue(session: Session, repository: Repository, **fields) -> Run:
    """A new queued run of ``repository``, numbered after its last one."""
    number = session.execute(
        update(Repository)
        .where(Repository.id == repository.id)
        .values(run_count=Repository.run_count + 1)
        .returning(Repository.run_count)
    ).scalar_one()
    run = Run(repository_id=repository.id, number=number, labels=dict(repository.labels))
    for key, value in fields.items():
        setattr(run, key, value)
    session.add(run)
    session.flush()
    return run


def fits(required: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether an agent with ``labels`` has every label a run requires."""
    return all(labels.get(key) == value for key, value in required.items())


def claim(db: Database, agent_id: int, labels: dict[str, str], lease: float) -> Run | None:
    """Lease the oldest queued run that fits ``labels`` to the agent, or None."""
    with db.transaction() as session:
        query = (
            select(Run.id, Run.labels)
            .where(Run.status == QUEUED)
            .order_by(Run.id)
            .limit(CANDIDATES)
        )
        if db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for run_id, required in session.execute(query).all():
            if not fits(required or {}, labels):
                continue
            taken = rowcount(
                session.execute(
                    update(Run)
                    .where(Run.id == run_id, Run.status == QUEUED)
                    .values(
                        status=RUNNING,
                        agent_id=agent_id,
                        attempt=Run.attempt + 1,
                        lease_until=now() + timedelta(seconds=lease),
                        started=now(),
                        acked_seq=0,
                    )
                )
            )
            if taken == 1:
                return session.get(Run, run_id)
    return None


def heartbeat(session: Session, agent_id: int, run_ids: list[int], lease: float) -> list[int]:
    """Extend the agent's leases on ``run_ids``; return those it must stop.

    They are the runs cancelled, or no longer its own (its lease ran out and the run
    went to another agent)."""
    if not run_ids:
        return []
    session.execute(
        update(Run)
        .where(Run.id.in_(run_ids), Run.agent_id == agent_id, Run.status == RUNNING)
        .values(lease_until=now() + timedelta(seconds=lease))
    )
    rows = session.execute(
        select(Run.id, Run.agent_id, Run.status, Run.cancel_requested).where(Run.id.in_(run_ids))
    ).all()
    keep = {
        rid
        for rid, owner, status, cancel in rows
        if owner == agent_id and status == RUNNING and not cancel
    }
    return [rid for rid in run_ids if rid not in keep]


def reap(db: Database) -> list[int]:
    """Requeue (or error, after ``MAX_ATTEMPTS``) the runs whose lease ran out."""
    with db.transaction() as session:
        expired = session.scalars(
            select(Run).where(Run.status == RUNNING, Run.lease_until < now())
        ).all()
        for run in expired:
            _lost(session, run, "the agent stopped answering")
        return [run.id for run in expired]


def release(session: Session, agent_id: int, why: str) -> list[int]:
    """Requeue (or error) the runs ``agent_id`` holds, without waiting for their leases.

    The agent says it lost them (it restarted)."""
    held = session.scalars(select(Run).where(Run.status == RUNNING, Run.agent_id == agent_id))
    lost = list(held)
    for run in lost:
        _lost(session, run, why)
    return [run.id for run in lost]


def _lost(session: Session, run: Run, why: str) -> None:
    """End ``run``'s lease: back to the queue once, then errored (cancelled if that was
    asked); its steps left running end failed, with ``why``."""
    if run.cancel_requested:
        note = f"{why}; the run was cancelled"
        run.status, run.finished = CANCELLED, now()
    elif run.attempt < MAX_ATTEMPTS:
        note = f"{why} (attempt {run.attempt}); run requeued"
        run.status = QUEUED
    else:
        note = f"{why} on attempt {run.attempt}; run errored"
        run.status, run.error, run.finished = ERROR, note, now()
    session.execute(
        update(Step)
        .where(Step.run_id == run.id, Step.status == RUNNING)
        .values(status=FAILURE, reason=why, finished=now())
    )
    session.add(LogChunk(run_id=run.id, attempt=run.attempt, lines=[["", note, True]]))
    run.agent_id, run.lease_until = None, None


def live_agents(session: Session) -> list[Agent]:
    """The agents heard from in the last :data:`AGENT_ALIVE` seconds."""
    since = now() - timedelta(seconds=AGENT_ALIVE)
    return list(session.scalars(select(Agent).where(Agent.last_seen >= since)))


def waiting_reason(session: Session, run: Run, agents: Sequence[Agent] | None = None) -> str:
    """Why a queued run waits: no live agent has its labels, or all that do are busy.

    ``agents``: the live ones, if the caller has read them (:func:`live_agents`)."""
    if agents is None:
        agents = live_agents(session)
    required = run.labels or {}
    if not any(fits(required, agent.labels) for agent in agents):
        if not agents:
            return "no agent is connected"
        wanted = [
            f"{k}={v}"
            for k, v in sorted(required.items())
            if not any(agent.labels.get(k) == v for agent in agents)
        ]
        if wanted:
            return f"no agent has {', '.join(wanted)}"
        return f"no agent has all of {', '.join(f'{k}={v}' for k, v in sorted(required.items()))}"
    return "waiting for a free agent"


def extend_leases(session: Session, lease: float) -> None:
    """Give every running run a full lease.

    After a server restart, its agents have had no one to send heartbeats to."""
    session.execute(
        update(Run)
        .where(Run.status == RUNNING)
        .values(lease_until=now() + timedelta(seconds=lease))
    )
