"""The agent protocol (long poll, heartbeat, reports, secrets) and the agents list."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.service import queue, reports, tokens
from dockyard.service.api.common import (
    LABEL_RE,
    NAME_RE,
    POLL_MAX,
    RECHECK,
    REPORTS_MAX,
    APIError,
    agent_token,
    authorize,
    field,
    in_thread,
    iso,
    read_json,
    service,
    string_map,
)
from dockyard.service.api.secrets import secrets_for_run
from dockyard.service.models import (
    Agent,
    Repository,
    Run,
    now,
)

SEEN_EVERY = timedelta(seconds=queue.AGENT_ALIVE / 3)  # how stale last_seen may get


async def list_agents(request: Request) -> Response:
    """The agents: labels, capacity, runs they hold, last heartbeat."""
    await authorize(request, tokens.READ)

    def work() -> list[dict[str, Any]]:
        with service(request).db.transaction() as session:
            return agents_json(session)

    return JSONResponse({"items": await in_thread(work)})


def agents_json(session: Session) -> list[dict[str, Any]]:
    """Every agent: labels, capacity, runs it holds now, last heartbeat."""
    busy = dict(
        session.execute(
            select(Run.agent_id, func.count(Run.id))
            .where(Run.status == "running")
            .group_by(Run.agent_id)
        ).all()
    )
    return [
        {
            "name": a.name,
            "labels": a.labels,
            "capacity": a.capacity,
            "running": busy.get(a.id, 0),
            "last_seen": iso(a.last_seen),
        }
        for a in session.scalars(select(Agent).order_by(Agent.name))
    ]


def _agent(session: Session, doc: dict[str, Any], token: str) -> Agent:
    """The agent ``doc`` names, as the caller's ``token`` may act as it: a name belongs
    to the token that first used it (until that token is deleted), so one agent token
    cannot take another agent's runs, leases or secrets.

    The row is written only when something changed, or ``last_seen`` is older than
    :data:`SEEN_EVERY`: a heartbeat a second per agent is not a write a second. An
    ``instance`` id other than the one stored means the agent restarted: the runs its
    previous process held are lost, and go back to the queue at once; but while the
    stored instance's heartbeat is fresh (:data:`.queue.AGENT_ALIVE`) a new one is a
    second process under the same name, refused with 409 (it would take the first's
    runs away), until that one says goodbye or stops answering."""
    name = field(doc, "name", str, check=NAME_RE.match)
    labels = string_map(doc, "labels", LABEL_RE)
    capacity = field(doc, "capacity", int, 1, check=lambda c: 1 <= c <= 1000)
    instance = field(doc, "instance", str, None, check=lambda i: 0 < len(i) <= 64)
    token_id = tokens.id_of(session, token)
    agent = session.scalar(select(Agent).where(Agent.name == name))
    if agent is None:
        agent = Agent(
            name=name,
            labels=labels,
            capacity=capacity,
            instance=instance,
            token_id=token_id,
            last_seen=now(),
        )
        session.add(agent)
        session.flush()
        return agent
    if not tokens.may_act_as(session, agent, token_id):
        raise APIError(403, f"agent {name} belongs to another agent token")
    if instance is not None and agent.instance != instance:
        if agent.instance is not None:
            heard = (now() - agent.last_seen).total_seconds()
            if heard < queue.AGENT_ALIVE:
                raise APIError(
                    409,
                    f"agent {name} is connected from another process (heard from"
                    f" {heard:.0f} s ago): stop it or give this one another --name;"
                    f" this one takes the name over {queue.AGENT_ALIVE:.0f} s after"
                    " that one's last heartbeat",
                )
            queue.release(session, agent.id, f"agent {name} restarted")
        agent.instance = instance
    if agent.token_id != token_id:
        agent.token_id = token_id
    if agent.labels != labels:
        agent.labels = labels
    if agent.capacity != capacity:
        agent.capacity = capacity
    if now() - agent.last_seen >= SEEN_EVERY:
        agent.last_seen = now()
    session.flush()
    return agent


def _job(session: Session, run: Run, lease: float) -> dict[str, Any]:
    repository = session.get_one(Repository, run.repository_id)
    return {
        "id": run.id,
        "attempt": run.attempt,
        "repository": repository.name,
        "number": run.number,
        "clone_url": repository.clone_url,
        "pipeline_path": repository.pipeline_path,
        "event": run.event,
        "branch": run.branch,
        "commit": run.commit,
        "ref": run.ref,
        "env": run.env,
        "labels": repository.labels,  # the repository's: a pipeline may not ask otherwise
        "lease": lease,
    }


async def agent_poll(request: Request) -> Response:
    """Wait up to ``wait`` seconds for a run the agent fits; ``{"job": null}`` if none."""
    token = await agent_token(request)
    doc = await read_json(request)
    wait = min(float(field(doc, "wait", (int, float), 20.0)), POLL_MAX)
    svc = service(request)

    def register() -> tuple[int, dict[str, str]]:
        with svc.db.transaction() as session:
            agent = _agent(session, doc, token)
            return agent.id, agent.labels

    def take(agent_id: int, labels: dict[str, str]) -> dict[str, Any] | None:
        run = queue.claim(svc.db, agent_id, labels, svc.lease)
        if run is None:
            return None
        with svc.db.transaction() as session:
            return _job(session, session.get_one(Run, run.id), svc.lease)

    agent_id, labels = await in_thread(register)
    deadline = time.monotonic() + wait
    while True:
        job = await in_thread(take, agent_id, labels)
        if job is not None:
            svc.logs.notify()
            return JSONResponse({"job": job})
        left = deadline - time.monotonic()
        if left <= 0 or await request.is_disconnected():
            return JSONResponse({"job": None})
        await svc.work.wait(min(left, RECHECK))


async def agent_heartbeat(request: Request) -> Response:
    """Extend the agent's leases; answer which of its runs it must stop."""
    token = await agent_token(request)
    doc = await read_json(request)
    runs = field(doc, "runs", list, [])
    if not all(isinstance(r, int) for r in runs) or len(runs) > 1000:
        raise APIError(400, "runs: must be a list of run ids")
    svc = service(request)

    def work() -> list[int]:
        with svc.db.transaction() as session:
            agent = _agent(session, doc, token)
            return queue.heartbeat(session, agent.id, runs, svc.lease)

    return JSONResponse({"stop": await in_thread(work)})


async def agent_goodbye(request: Request) -> Response:
    """An agent process stops: its runs go back to the queue at once.

    Its name is free for the next process, with no wait for its heartbeat to go stale."""
    token = await agent_token(request)
    doc = await read_json(request)
    svc = service(request)

    def work() -> list[int]:
        with svc.db.transaction() as session:
            agent = _agent(session, doc, token)
            agent.instance = None
            return queue.release(session, agent.id, f"agent {agent.name} stopped")

    released = await in_thread(work)
    if released:
        svc.work.notify()
        svc.logs.notify()
    return JSONResponse({"released": released})


async def agent_reports(request: Request) -> Response:
    """Store an agent's numbered reports about a run it holds (:mod:`.reports`)."""
    token = await agent_token(request)
    doc = await read_json(request, REPORTS_MAX)
    attempt = field(doc, "attempt", int)
    try:
        batch = reports.REPORTS.validate_python(doc.get("reports"))
    except ValidationError as e:
        raise APIError(400, f"reports: {e.errors()[0]['msg']}") from None
    svc = service(request)
    run_id = _path_int(request, "run")

    def work() -> int:
        with svc.db.transaction() as session:
            agent = _agent(session, doc, token)
            try:
                return reports.store_reports(session, run_id, agent.id, attempt, batch)
            except reports.StaleReport as e:
                raise APIError(409, str(e)) from None

    acked = await in_thread(work)
    svc.logs.notify()
    return JSONResponse({"acked": acked})


async def agent_secrets(request: Request) -> Response:
    """The values of the named secrets a run gets, for the agent that holds the run.

    They are the global secrets and its repository's; unknown names are left out."""
    token = await agent_token(request)
    doc = await read_json(request)
    attempt = field(doc, "attempt", int)
    names = field(doc, "names", list)
    if not all(isinstance(n, str) for n in names):
        raise APIError(400, "names: must be a list of strings")
    svc = service(request)
    run_id = _path_int(request, "run")

    def work() -> dict[str, str]:
        with svc.db.transaction() as session:
            agent = _agent(session, doc, token)
            run = session.get(Run, run_id)
            if run is None or not reports.holds(run, agent.id, attempt):
                raise APIError(409, f"run {run_id} is not held by this agent")
            repository = session.get_one(Repository, run.repository_id)
            if run.fork and not repository.fork_secrets:
                return {}  # a fork's pull request gets none, unless the repository allows
            return secrets_for_run(session, svc.box, run.repository_id, names)

    return JSONResponse({"secrets": await in_thread(work)})


def _path_int(request: Request, name: str) -> int:
    value = request.path_params[name]
    if not value.isdigit():
        raise APIError(404, f"no run {value[:20]!r}")
    return int(value)
