"""The CI service's queue and agent reports, on a SQLite database in a temp dir: runs
taken by exactly one agent, label fit, leases requeued once then errored, reports
stored once whatever is resent, and refused from an agent that lost the run."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from dockyard.service import queue, reports
from dockyard.service.database import Database, open_engine, sqlite_url
from dockyard.service.models import Agent, LogChunk, Repository, Run, Step


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """The database every test runs on: SQLite in a temp dir, and PostgreSQL (where
    Debian's is installed and we are root)."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def db(url) -> Database:
    return Database(open_engine(url))


def add_repository(db: Database, labels: dict[str, str] | None = None) -> Repository:
    with db.transaction() as session:
        repository = Repository(name="r", clone_url="file:///x", labels=labels or {}, run_count=0)
        session.add(repository)
        return repository


def add_agents(db: Database, count: int) -> list[int]:
    with db.transaction() as session:
        agents = [Agent(name=f"a{i}", labels={}, capacity=1) for i in range(count)]
        session.add_all(agents)
        session.flush()
        return [a.id for a in agents]


def enqueue(db: Database, repository: Repository, count: int = 1) -> list[int]:
    with db.transaction() as session:
        return [queue.enqueue(session, repository, event="manual").id for _ in range(count)]


def test_runs_are_numbered_per_repository(db):
    repository = add_repository(db)
    enqueue(db, repository, 3)
    with db.transaction() as session:
        assert sorted(session.scalars(select(Run.number))) == [1, 2, 3]


def test_racing_agents_never_take_one_run_twice(db, url):
    """Six agents, through two servers (engines) on one database, race for 60 runs."""
    repository = add_repository(db)
    run_ids = enqueue(db, repository, 60)
    agents = add_agents(db, 6)
    servers = [db, Database(open_engine(url))]
    taken: list[tuple[int, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(agents))

    def agent(agent_id: int) -> None:
        start.wait()
        server = servers[agent_id % 2]
        while (run := queue.claim(server, agent_id, {}, 30)) is not None:
            with lock:
                taken.append((run.id, agent_id))

    threads = [threading.Thread(target=agent, args=(a,)) for a in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(run_id for run_id, _ in taken) == run_ids  # each exactly once
    with db.transaction() as session:
        owners = dict(session.execute(select(Run.id, Run.agent_id)).all())
    assert all(owners[run_id] == agent_id for run_id, agent_id in taken)


def test_a_run_goes_only_to_an_agent_with_its_labels(db):
    repository = add_repository(db, {"gpu": "true"})
    (run_id,) = enqueue(db, repository)
    (agent_id,) = add_agents(db, 1)
    assert queue.claim(db, agent_id, {"gpu": "false", "os": "linux"}, 30) is None
    assert queue.claim(db, agent_id, {}, 30) is None
    assert queue.claim(db, agent_id, {"gpu": "true", "os": "linux"}, 30).id == run_id


def test_a_dead_agents_run_is_requeued_once_then_errored(db):
    repository = add_repository(db)
    (run_id,) = enqueue(db, repository)
    first, second = add_agents(db, 2)
    assert queue.claim(db, first, {}, lease=-1).attempt == 1  # a lease already run out
    assert queue.reap(db) == [run_id]
    with db.transaction() as session:
        assert session.get(Run, run_id).status == "queued"
    assert queue.claim(db, second, {}, lease=-1).attempt == 2
    assert queue.reap(db) == [run_id]
    with db.transaction() as session:
        run = session.get(Run, run_id)
        assert run.status == "error" and "attempt 2" in run.error
        notes = [c.lines[0][1] for c in session.scalars(select(LogChunk).order_by(LogChunk.id))]
    assert "requeued" in notes[0] and "errored" in notes[1]
    assert queue.claim(db, first, {}, 30) is None


def test_heartbeats_keep_a_lease_and_say_which_runs_to_stop(db):
    repository = add_repository(db)
    kept, cancelled = enqueue(db, repository, 2)
    agent, other = add_agents(db, 2)
    queue.claim(db, agent, {}, lease=-1)
    queue.claim(db, agent, {}, lease=-1)
    with db.transaction() as session:
        session.get(Run, cancelled).cancel_requested = True
        assert queue.heartbeat(session, agent, [kept, cancelled], 30) == [cancelled]
        assert queue.heartbeat(session, other, [kept], 30) == [kept]  # not its run
    assert queue.reap(db) == []  # the heartbeat renewed the lease


def held_run(db: Database) -> tuple[int, int]:
    repository = add_repository(db)
    (run_id,) = enqueue(db, repository)
    (agent_id,) = add_agents(db, 1)
    queue.claim(db, agent_id, {}, 30)
    return run_id, agent_id


def batch(*docs: dict) -> list:
    return reports.REPORTS.validate_python(list(docs))


def test_resent_reports_are_stored_once_and_a_gap_waits(db):
    run_id, agent_id = held_run(db)
    first = batch(
        {"seq": 1, "kind": "step", "name": "s", "status": "running"},
        {"seq": 2, "kind": "log", "lines": [["s", "one", False]]},
    )
    with db.transaction() as session:
        assert reports.store_reports(session, run_id, agent_id, 1, first) == 2
    with db.transaction() as session:  # the answer was lost: the agent sends it all again
        again = first + batch({"seq": 3, "kind": "log", "lines": [["s", "two", False]]})
        assert reports.store_reports(session, run_id, agent_id, 1, again) == 3
    with db.transaction() as session:  # seq 5 without 4: nothing stored, 3 acknowledged
        gap = batch({"seq": 5, "kind": "log", "lines": [["s", "five", False]]})
        assert reports.store_reports(session, run_id, agent_id, 1, gap) == 3
    with db.transaction() as session:
        lines = [c.lines for c in session.scalars(select(LogChunk).order_by(LogChunk.id))]
        assert lines == [[["s", "one", False]], [["s", "two", False]]]
        assert session.scalar(select(Step.status)) == "running"


def test_reports_about_a_run_the_agent_lost_change_nothing(db):
    run_id, agent_id = held_run(db)
    end = batch({"seq": 1, "kind": "finish", "status": "success"})
    with db.transaction() as session:
        with pytest.raises(reports.StaleReport):  # an attempt it does not hold
            reports.store_reports(session, run_id, agent_id, 2, end)
        reports.store_reports(session, run_id, agent_id, 1, end)
    late = batch({"seq": 2, "kind": "log", "lines": [["s", "late", False]]})
    with pytest.raises(reports.StaleReport), db.transaction() as session:
        reports.store_reports(session, run_id, agent_id, 1, late)
    with db.transaction() as session:
        assert session.scalar(select(LogChunk.id)) is None
        assert session.get(Run, run_id).status == "success"


def test_a_cancelled_run_ends_cancelled_whatever_the_agent_says(db):
    run_id, agent_id = held_run(db)
    with db.transaction() as session:
        session.get(Run, run_id).cancel_requested = True
        end = batch({"seq": 1, "kind": "finish", "status": "success"})
        reports.store_reports(session, run_id, agent_id, 1, end)
    with db.transaction() as session:
        assert session.get(Run, run_id).status == "cancelled"


def test_a_queued_run_says_why_it_waits(db):
    repository = add_repository(db, {"gpu": "true", "os": "linux"})
    (run_id,) = enqueue(db, repository)
    with db.transaction() as session:
        assert queue.waiting_reason(session, session.get(Run, run_id)) == "no agent is connected"
        session.add(Agent(name="cpu", labels={"os": "linux"}, capacity=1))
    with db.transaction() as session:
        run = session.get(Run, run_id)
        assert queue.waiting_reason(session, run) == "no agent has gpu=true"
        session.add(Agent(name="gpu", labels={"os": "linux", "gpu": "true"}, capacity=1))
    with db.transaction() as session:
        run = session.get(Run, run_id)
        assert queue.waiting_reason(session, run) == "waiting for a free agent"


def test_a_run_log_stops_growing_at_its_cap(db, monkeypatch):
    monkeypatch.setattr(reports, "MAX_LOG", 100)
    run_id, agent_id = held_run(db)
    for seq in range(1, 6):
        chunk = batch({"seq": seq, "kind": "log", "lines": [["s", "x" * 39, False]]})
        with db.transaction() as session:
            assert reports.store_reports(session, run_id, agent_id, 1, chunk) == seq
    with db.transaction() as session:
        chunks = [c.lines for c in session.scalars(select(LogChunk).order_by(LogChunk.id))]
    assert len(chunks) == 3  # 40, 80, 120 characters: the third passes the cap and says so
    assert "the rest is not kept" in chunks[2][-1][1]


def test_a_due_schedule_queues_one_run_however_many_servers_look(db, url):
    from datetime import timedelta

    from dockyard.service import cron
    from dockyard.service.models import Schedule, now

    repository = add_repository(db)
    with db.transaction() as session:
        session.add(
            Schedule(
                repository_id=repository.id,
                name="nightly",
                spec="0 3 * * *",
                branch="main",
                next_run=now() - timedelta(minutes=1),
            )
        )
    servers = [db, Database(open_engine(url)), Database(open_engine(url))]
    counts: list[int] = []
    start = threading.Barrier(len(servers))

    def look(server: Database) -> None:
        start.wait()
        counts.append(cron.due_runs(server))

    threads = [threading.Thread(target=look, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(counts) == [0, 0, 1]
    with db.transaction() as session:
        (run,) = session.scalars(select(Run)).all()
        assert (run.event, run.branch, run.message) == ("cron", "main", "schedule nightly")
        schedule = session.scalar(select(Schedule))
        assert schedule.next_run > now() and schedule.next_run.hour == 3


def test_a_pipelines_labels_send_its_run_to_an_agent_that_has_them(db):
    """The agent that took the run lacks gpu=true: the run goes back to the queue with
    the label, its attempt given back, says why it waits, and the GPU agent takes it."""
    repository = add_repository(db, {"os": "linux"})
    (run_id,) = enqueue(db, repository)
    with db.transaction() as session:
        cpu = Agent(name="cpu", labels={"os": "linux"}, capacity=1)
        session.add(cpu)
        session.flush()
        cpu_id = cpu.id
    assert queue.claim(db, cpu_id, {"os": "linux"}, 30).attempt == 1
    needs = batch(
        {"seq": 1, "kind": "log", "lines": [["", "checked out", True]]},
        {"seq": 2, "kind": "labels", "labels": {"gpu": "true"}},
        {"seq": 3, "kind": "log", "lines": [["", "not stored", True]]},
    )
    with db.transaction() as session:
        assert reports.store_reports(session, run_id, cpu_id, 1, needs) == 2
    with db.transaction() as session:
        run = session.get(Run, run_id)
        assert (run.status, run.attempt, run.agent_id) == ("queued", 0, None)
        assert run.labels == {"os": "linux", "gpu": "true"}
        assert queue.waiting_reason(session, run) == "no agent has gpu=true"
        notes = [c.lines[0][1] for c in session.scalars(select(LogChunk).order_by(LogChunk.id))]
        assert notes == ["checked out", "agent cpu lacks gpu=true: back in the queue"]
        gpu = Agent(name="gpu", labels={"os": "linux", "gpu": "true"}, capacity=1)
        session.add(gpu)
        session.flush()
        gpu_id = gpu.id
    assert queue.claim(db, cpu_id, {"os": "linux"}, 30) is None
    assert queue.claim(db, gpu_id, {"os": "linux", "gpu": "true"}, 30).attempt == 1
    again = batch({"seq": 1, "kind": "labels", "labels": {"gpu": "true"}})
    with db.transaction() as session:
        assert reports.store_reports(session, run_id, gpu_id, 1, again) == 1
        assert session.get(Run, run_id).status == "running"  # it fits: it goes on


def test_a_pipeline_may_not_ask_for_other_labels_than_its_repositorys(db):
    run_id, agent_id = held_run(db)
    with db.transaction() as session:
        session.get(Repository, session.get(Run, run_id).repository_id).labels = {
            "pool": "untrusted"
        }
    escape = batch({"seq": 1, "kind": "labels", "labels": {"pool": "trusted"}})
    with db.transaction() as session:
        reports.store_reports(session, run_id, agent_id, 1, escape)
    with db.transaction() as session:
        run = session.get(Run, run_id)
        assert run.status == "failure"
        assert run.error == (
            "labels: the pipeline asks for pool=trusted; this repository's runs need pool=untrusted"
        )
