"""The REST API under ``/api/v1``: JSON in and out, errors as ``{"error": "..."}``.

Users (tokens of role read / write / admin, :mod:`.tokens`):

- ``GET|POST /repos``, ``GET /repos/{repo}``: repositories (POST: admin)
- ``GET|POST /repos/{repo}/runs``: runs, newest first, paged (POST: a manual run, write)
- ``GET /repos/{repo}/runs/{n}``: a run and its steps
- ``POST /repos/{repo}/runs/{n}/cancel``: cancel (write); ``.../restart``: run it again
  as a new run (write)
- ``GET /repos/{repo}/runs/{n}/logs``: log chunks as JSON (``?after=ID``), or followed
  as Server-Sent Events (``Accept: text/event-stream``; resumes after ``Last-Event-ID``)
- ``GET /repos/{repo}/secrets``, ``PUT|DELETE /repos/{repo}/secrets/{name}``: admin;
  values are write-only
- ``POST /tokens`` (admin), ``GET /agents``

Forges: ``POST /hooks/{repo}``, signed (:mod:`.webhooks`), no token.
``GET /openapi.json``: every route, from this module's handlers (:mod:`.openapi`).
Agents (role agent): ``POST /agent/poll`` (long poll), ``/agent/heartbeat``,
``/agent/runs/{id}/reports`` (:mod:`.reports`), ``/agent/runs/{id}/secrets``.

Every body is read with a size cap and a deadline before it is parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dockyard.service import queue, reports, tokens, webhooks
from dockyard.service.database import Database
from dockyard.service.models import (
    CANCELLED,
    FINISHED,
    QUEUED,
    Agent,
    LogChunk,
    Repository,
    Run,
    Secret,
    Step,
    now,
)
from dockyard.service.notify import Notifier
from dockyard.service.openapi import API, openapi_document
from dockyard.service.secrets import SecretBox, secret_context, webhook_context

JSON_MAX = 64 << 10
REPORTS_MAX = 4 << 20
BODY_TIMEOUT = 30.0
PER_PAGE_MAX = 100
POLL_MAX = 30.0  # seconds a long poll may wait
FOLLOW_MAX = 3600.0  # seconds one log-follow request may last (then resume)
RECHECK = 1.0  # seconds between database checks of a waiter (other servers' changes)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")


class APIError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Service:
    """What every handler shares."""

    db: Database
    box: SecretBox
    lease: float  # seconds a run's lease lasts without a heartbeat
    work: Notifier  # a run was queued
    logs: Notifier  # a run's log or state changed


# --- helpers -------------------------------------------------------------------------


async def read_body(request: Request, cap: int) -> bytes:
    """The body, refused with 413 once past ``cap`` bytes and 408 if it stalls."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise APIError(413, f"request body over {cap} bytes")

    async def collect() -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise APIError(413, f"request body over {cap} bytes")
        return bytes(body)

    try:
        return await asyncio.wait_for(collect(), BODY_TIMEOUT)
    except TimeoutError:
        raise APIError(408, "request body too slow") from None


async def read_json(request: Request, cap: int = JSON_MAX) -> dict[str, Any]:
    body = await read_body(request, cap)
    try:
        doc = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise APIError(400, f"body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise APIError(400, "body must be a JSON object")
    return doc


def field(doc: dict[str, Any], name: str, kind: type, default: Any = ..., check=None) -> Any:
    """``doc[name]``, of type ``kind`` (and passing ``check``), or a 400 naming it."""
    if name not in doc or doc[name] is None:
        if default is ...:
            raise APIError(400, f"{name}: required")
        return default
    value = doc[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise APIError(400, f"{name}: must be a {getattr(kind, '__name__', 'number')}")
    if check is not None and not check(value):
        raise APIError(400, f"{name}: invalid value {str(value)[:100]!r}")
    return value


def string_map(doc: dict[str, Any], name: str, key_re: re.Pattern[str]) -> dict[str, str]:
    value = field(doc, name, dict, {})
    if len(value) > 100 or not all(
        isinstance(k, str) and key_re.match(k) and isinstance(v, str) and len(v) <= 4096
        for k, v in value.items()
    ):
        raise APIError(400, f"{name}: must map names to strings")
    return value


async def authorize(request: Request, needed: str) -> str:
    """The caller's role, if it allows ``needed``; else 401 (no or unknown token) or 403."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise APIError(401, "an API token is required (Authorization: Bearer TOKEN)")

    def lookup() -> str | None:
        with service(request).db.transaction() as session:
            return tokens.role_of(session, token.strip())

    role = await in_thread(lookup)
    if role is None:
        raise APIError(401, "unknown API token")
    if not tokens.allows(role, needed):
        raise APIError(403, f"this needs a token of role {needed}; yours is {role}")
    return role


def service(request: Request) -> Service:
    return request.app.state.service


def page_args(request: Request) -> tuple[int, int]:
    try:
        page = int(request.query_params.get("page", "1"))
        per_page = int(request.query_params.get("per_page", "30"))
    except ValueError:
        raise APIError(400, "page and per_page must be integers") from None
    if page < 1 or not 1 <= per_page <= PER_PAGE_MAX:
        raise APIError(400, f"page >= 1 and 1 <= per_page <= {PER_PAGE_MAX}")
    return page, per_page


def paged(items: list[Any], page: int, per_page: int, total: int) -> dict[str, Any]:
    more = page * per_page < total
    return {
        "items": items,
        "page": page,
        "per_page": per_page,
        "total": total,
        "next_page": page + 1 if more else None,
    }


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") + "Z" if moment else None


def find_repository(session: Session, name: str) -> Repository:
    repository = session.scalar(select(Repository).where(Repository.name == name))
    if repository is None:
        raise APIError(404, f"no repository named {name[:100]!r}")
    return repository


def find_run(session: Session, repo: str, number: str) -> Run:
    repository = find_repository(session, repo)
    run = None
    if number.isdigit():
        run = session.scalar(
            select(Run).where(Run.repository_id == repository.id, Run.number == int(number))
        )
    if run is None:
        raise APIError(404, f"{repository.name} has no run {number[:20]!r}")
    return run


def repository_json(repository: Repository) -> dict[str, Any]:
    return {
        "name": repository.name,
        "clone_url": repository.clone_url,
        "default_branch": repository.default_branch,
        "pipeline_path": repository.pipeline_path,
        "labels": repository.labels,
        "has_webhook_secret": repository.webhook_secret is not None,
        "fork_secrets": repository.fork_secrets,
        "runs": repository.run_count,
        "created": iso(repository.created),
    }


def run_json(session: Session, run: Run, steps: bool = False) -> dict[str, Any]:
    repository = session.get(Repository, run.repository_id)
    agent = session.get(Agent, run.agent_id) if run.agent_id else None
    doc = {
        "id": run.id,
        "repository": repository.name if repository else None,
        "number": run.number,
        "status": run.status,
        "event": run.event,
        "branch": run.branch,
        "commit": run.commit,
        "fork": run.fork,
        "author": run.author,
        "message": run.message,
        "error": run.error,
        "attempt": run.attempt,
        "agent": agent.name if agent else None,
        "cancel_requested": run.cancel_requested,
        "waiting": queue.waiting_reason(session, run) if run.status == QUEUED else None,
        "created": iso(run.created),
        "started": iso(run.started),
        "finished": iso(run.finished),
    }
    if steps:
        rows = session.scalars(select(Step).where(Step.run_id == run.id).order_by(Step.id))
        names = {a.id: a.name for a in session.scalars(select(Agent))}
        doc["steps"] = [
            {
                "name": s.name,
                "status": s.status,
                "exit_code": s.exit_code,
                "reason": s.reason,
                "duration": s.duration,
                "agent": names.get(s.agent_id),
                "attempt": s.attempt,
                "tests": s.tests,
                "started": iso(s.started),
                "finished": iso(s.finished),
            }
            for s in rows
        ]
    return doc


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await run_in_threadpool(function, *args)


# --- users ---------------------------------------------------------------------------


async def root(request: Request) -> Response:
    """The API's name and version (no token needed)."""
    return JSONResponse({"service": "dockyard", "api": "v1"})


async def create_token(request: Request) -> Response:
    """A new API token of a role (admin); its value is shown only in this answer."""
    await authorize(request, tokens.ADMIN)
    doc = await read_json(request)
    name = field(doc, "name", str, check=NAME_RE.match)
    role = field(doc, "role", str, check=lambda r: r in tokens.ROLES)

    def work() -> str:
        with service(request).db.transaction() as session:
            return tokens.create_token(session, name, role)

    return JSONResponse({"name": name, "role": role, "token": await in_thread(work)}, 201)


async def list_repositories(request: Request) -> Response:
    """The repositories, by name, paged."""
    await authorize(request, tokens.READ)
    page, per_page = page_args(request)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            total = session.scalar(select(func.count(Repository.id)))
            rows = session.scalars(
                select(Repository)
                .order_by(Repository.name)
                .offset((page - 1) * per_page)
                .limit(per_page)
            )
            return paged([repository_json(r) for r in rows], page, per_page, total)

    return JSONResponse(await in_thread(work))


async def create_repository(request: Request) -> Response:
    """Add a repository: clone URL, default branch, pipeline path, webhook secret,
    the labels an agent needs (admin)."""
    await authorize(request, tokens.ADMIN)
    doc = await read_json(request)
    name = field(doc, "name", str, check=NAME_RE.match)
    clone_url = field(  # never an option to git
        doc, "clone_url", str, check=lambda u: 0 < len(u) <= 2048 and not u.startswith("-")
    )
    branch = field(doc, "default_branch", str, "main", check=lambda b: 0 < len(b) <= 255)
    path = field(doc, "pipeline_path", str, ".dockyard.yml", check=_relative_path)
    secret = field(doc, "webhook_secret", str, None, check=lambda s: 16 <= len(s) <= 1024)
    labels = string_map(doc, "labels", LABEL_RE)
    fork_secrets = field(doc, "fork_secrets", bool, False)
    box = service(request).box

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            if session.scalar(select(Repository.id).where(Repository.name == name)):
                raise APIError(409, f"repository {name!r} exists")
            repository = Repository(
                name=name,
                clone_url=clone_url,
                default_branch=branch,
                pipeline_path=path,
                labels=labels,
                run_count=0,
                fork_secrets=fork_secrets,
            )
            session.add(repository)
            session.flush()
            if secret is not None:
                repository.webhook_secret = box.seal(secret, webhook_context(repository.id))
            return repository_json(repository)

    return JSONResponse(await in_thread(work), 201)


def _relative_path(path: str) -> bool:
    parts = path.split("/")
    return 0 < len(path) <= 1024 and not path.startswith("/") and ".." not in parts


async def get_repository(request: Request) -> Response:
    """One repository."""
    await authorize(request, tokens.READ)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            return repository_json(find_repository(session, request.path_params["repo"]))

    return JSONResponse(await in_thread(work))


async def list_runs(request: Request) -> Response:
    """A repository's runs, newest first, paged."""
    await authorize(request, tokens.READ)
    page, per_page = page_args(request)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            where = Run.repository_id == repository.id
            total = session.scalar(select(func.count(Run.id)).where(where))
            rows = session.scalars(
                select(Run)
                .where(where)
                .order_by(Run.number.desc())
                .offset((page - 1) * per_page)
                .limit(per_page)
            ).all()
            return paged([run_json(session, r) for r in rows], page, per_page, total)

    return JSONResponse(await in_thread(work))


async def trigger(request: Request) -> Response:
    """A manual run: of ``branch`` (default: the repository's) at ``commit`` (default:
    the branch's head when the agent fetches it), with extra ``env``."""
    await authorize(request, tokens.WRITE)
    doc = await read_json(request)
    branch = field(doc, "branch", str, None, check=lambda b: 0 < len(b) <= 255)
    commit = field(doc, "commit", str, None, check=re.compile(r"^[0-9a-f]{40,64}$").match)
    env = string_map(doc, "env", ENV_RE)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            run = queue.enqueue(
                session,
                repository,
                event="manual",
                branch=branch or repository.default_branch,
                commit=commit,
                env=env,
            )
            return run_json(session, run)

    created = await in_thread(work)
    service(request).work.notify()
    return JSONResponse(created, 201)


async def restart_run(request: Request) -> Response:
    """A new run of what an ended run ran: its commit, branch, event and env."""
    await authorize(request, tokens.WRITE)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            old = find_run(session, request.path_params["repo"], request.path_params["number"])
            if old.status not in FINISHED:
                raise APIError(409, f"run {old.number} has not ended ({old.status})")
            repository = session.get(Repository, old.repository_id)
            run = queue.enqueue(
                session,
                repository,
                event=old.event,
                branch=old.branch,
                commit=old.commit,
                author=old.author,
                message=old.message,
                env=dict(old.env),
                ref=old.ref,
                fork=old.fork,
            )
            return run_json(session, run)

    created = await in_thread(work)
    service(request).work.notify()
    return JSONResponse(created, 201)


async def get_run(request: Request) -> Response:
    """A run and its steps (status, exit code, agent, JUnit counts)."""
    await authorize(request, tokens.READ)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            run = find_run(session, request.path_params["repo"], request.path_params["number"])
            return run_json(session, run, steps=True)

    return JSONResponse(await in_thread(work))


async def cancel_run(request: Request) -> Response:
    """A queued run is cancelled at once; a running one when its agent next hears
    (its heartbeat), which kills the step's containers."""
    await authorize(request, tokens.WRITE)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            run = find_run(session, request.path_params["repo"], request.path_params["number"])
            if run.status in FINISHED:
                raise APIError(409, f"run {run.number} has already ended ({run.status})")
            if run.status == QUEUED:
                run.status, run.finished = CANCELLED, now()
                session.add(
                    LogChunk(
                        run_id=run.id,
                        attempt=run.attempt,
                        lines=[["", "cancelled while queued", True]],
                    )
                )
            run.cancel_requested = True
            return run_json(session, run)

    result = await in_thread(work)
    service(request).logs.notify()
    return JSONResponse(result, 202)


def _chunks(db: Database, repo: str, number: str, after: int, limit: int):
    """Chunks after ``after`` and whether the run has ended, read together: an ended
    run's last chunk is always among what the same read sees."""
    with db.transaction() as session:
        run = find_run(session, repo, number)
        rows = session.scalars(
            select(LogChunk)
            .where(LogChunk.run_id == run.id, LogChunk.id > after)
            .order_by(LogChunk.id)
            .limit(limit)
        ).all()
        return [(c.id, c.attempt, c.lines) for c in rows], run.status


async def run_logs(request: Request) -> Response:
    """A run's log: chunks after ``?after=ID`` as JSON, or followed as Server-Sent
    Events (``Accept: text/event-stream``, resuming after ``Last-Event-ID``)."""
    await authorize(request, tokens.READ)
    repo, number = request.path_params["repo"], request.path_params["number"]
    db = service(request).db
    follow = "text/event-stream" in request.headers.get("accept", "")
    start = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not start.isdigit():
        raise APIError(400, "Last-Event-ID / after must be a chunk id")
    after = int(start)
    chunks, status = await in_thread(_chunks, db, repo, number, after, 1000)  # 404 early
    if not follow:
        return JSONResponse(
            {
                "status": status,
                "chunks": [{"id": i, "attempt": a, "lines": lines} for i, a, lines in chunks],
            }
        )
    return StreamingResponse(
        _follow(service(request), repo, number, after, chunks, status),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _follow(
    svc: Service, repo: str, number: str, after: int, chunks: list, status: str
) -> AsyncIterator[bytes]:
    deadline = time.monotonic() + FOLLOW_MAX
    idle = 0.0
    while time.monotonic() < deadline:
        for chunk_id, attempt, lines in chunks:
            data = json.dumps({"attempt": attempt, "lines": lines})
            yield f"id: {chunk_id}\nevent: log\ndata: {data}\n\n".encode()
            after = chunk_id
        if not chunks:
            if status in FINISHED:
                yield f"event: end\ndata: {json.dumps({'status': status})}\n\n".encode()
                return
            started = time.monotonic()
            await svc.logs.wait(RECHECK)
            idle += time.monotonic() - started
            if idle > 15:  # a comment keeps proxies from closing an idle stream
                idle = 0.0
                yield b": keep-alive\n\n"
        chunks, status = await in_thread(_chunks, svc.db, repo, number, after, 1000)


async def list_secrets(request: Request) -> Response:
    """The names of a repository's secrets (admin); values are never returned."""
    await authorize(request, tokens.ADMIN)

    def work() -> list[str]:
        with service(request).db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            return list(
                session.scalars(
                    select(Secret.name)
                    .where(Secret.repository_id == repository.id)
                    .order_by(Secret.name)
                )
            )

    return JSONResponse({"items": [{"name": n} for n in await in_thread(work)]})


async def put_secret(request: Request) -> Response:
    """Set a repository's secret from ``{"value": ...}`` (admin)."""
    await authorize(request, tokens.ADMIN)
    name = request.path_params["name"]
    if not ENV_RE.match(name):
        raise APIError(400, f"secret name {name[:100]!r}: letters, digits and _ only")
    value = field(await read_json(request), "value", str, check=lambda v: len(v) <= 32 << 10)
    box = service(request).box

    def work() -> None:
        with service(request).db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            sealed = box.seal(value, secret_context(repository.id, name))
            secret = session.scalar(
                select(Secret).where(Secret.repository_id == repository.id, Secret.name == name)
            )
            if secret is None:
                session.add(Secret(repository_id=repository.id, name=name, sealed=sealed))
            else:
                secret.sealed, secret.updated = sealed, now()

    await in_thread(work)
    return Response(status_code=204)


async def delete_secret(request: Request) -> Response:
    """Delete a repository's secret (admin)."""
    await authorize(request, tokens.ADMIN)

    def work() -> int:
        with service(request).db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            return session.execute(
                delete(Secret).where(
                    Secret.repository_id == repository.id,
                    Secret.name == request.path_params["name"],
                )
            ).rowcount

    if not await in_thread(work):
        raise APIError(404, "no such secret")
    return Response(status_code=204)


async def list_agents(request: Request) -> Response:
    """The agents: labels, capacity, runs they hold, last heartbeat."""
    await authorize(request, tokens.READ)

    def work() -> list[dict[str, Any]]:
        with service(request).db.transaction() as session:
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

    return JSONResponse({"items": await in_thread(work)})


# --- forges --------------------------------------------------------------------------


async def webhook(request: Request) -> Response:
    """A push from a forge; 401 and nothing queued unless its signature is right."""
    body = await read_body(request, webhooks.MAX_PAYLOAD)
    headers = {k.lower(): v for k, v in request.headers.items()}
    svc = service(request)

    def work() -> tuple[int, dict[str, Any]]:
        with svc.db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            if repository.webhook_secret is None:
                raise APIError(401, "this repository has no webhook secret")
            secret = svc.box.open(repository.webhook_secret, webhook_context(repository.id))
            if not webhooks.signature_valid(secret, body, headers):
                raise APIError(401, "bad or missing webhook signature")
            try:
                event = webhooks.event_name(headers)
                if event == "ping":
                    return 200, {"queued": None}
                push = webhooks.parse(event, body)
            except webhooks.WebhookError as e:
                raise APIError(400, str(e)) from None
            if push is None:
                return 200, {"queued": None}
            run = queue.enqueue(
                session,
                repository,
                event=push.event,
                branch=push.ref_name,
                commit=push.commit,
                ref=push.ref,
                fork=push.fork,
                author=push.author,
                message=push.message,
            )
            return 201, {"queued": run_json(session, run)}

    status, doc = await in_thread(work)
    svc.work.notify()
    return JSONResponse(doc, status)


# --- agents --------------------------------------------------------------------------


def _agent(session: Session, doc: dict[str, Any]) -> Agent:
    name = field(doc, "name", str, check=NAME_RE.match)
    labels = string_map(doc, "labels", LABEL_RE)
    capacity = field(doc, "capacity", int, 1, check=lambda c: 1 <= c <= 1000)
    agent = session.scalar(select(Agent).where(Agent.name == name))
    if agent is None:
        agent = Agent(name=name)
        session.add(agent)
    agent.labels, agent.capacity, agent.last_seen = labels, capacity, now()
    session.flush()
    return agent


def _job(session: Session, run: Run, lease: float) -> dict[str, Any]:
    repository = session.get(Repository, run.repository_id)
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
        "lease": lease,
    }


async def agent_poll(request: Request) -> Response:
    """Wait up to ``wait`` seconds for a run the agent fits; ``{"job": null}`` if none."""
    await authorize(request, tokens.AGENT)
    doc = await read_json(request)
    wait = min(float(field(doc, "wait", (int, float), 20.0)), POLL_MAX)
    svc = service(request)

    def register() -> tuple[int, dict[str, str]]:
        with svc.db.transaction() as session:
            agent = _agent(session, doc)
            return agent.id, agent.labels

    def take(agent_id: int, labels: dict[str, str]) -> dict[str, Any] | None:
        run = queue.claim(svc.db, agent_id, labels, svc.lease)
        if run is None:
            return None
        with svc.db.transaction() as session:
            return _job(session, session.get(Run, run.id), svc.lease)

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
    await authorize(request, tokens.AGENT)
    doc = await read_json(request)
    runs = field(doc, "runs", list, [])
    if not all(isinstance(r, int) for r in runs) or len(runs) > 1000:
        raise APIError(400, "runs: must be a list of run ids")
    svc = service(request)

    def work() -> list[int]:
        with svc.db.transaction() as session:
            agent = _agent(session, doc)
            return queue.heartbeat(session, agent.id, runs, svc.lease)

    return JSONResponse({"stop": await in_thread(work)})


async def agent_reports(request: Request) -> Response:
    """Store an agent's numbered reports about a run it holds (:mod:`.reports`)."""
    await authorize(request, tokens.AGENT)
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
            agent = _agent(session, doc)
            try:
                return reports.store_reports(session, run_id, agent.id, attempt, batch)
            except reports.StaleReport as e:
                raise APIError(409, str(e)) from None

    acked = await in_thread(work)
    svc.logs.notify()
    return JSONResponse({"acked": acked})


async def agent_secrets(request: Request) -> Response:
    """The values of the named secrets of the run's repository (unknown names left out),
    for the agent that holds the run."""
    await authorize(request, tokens.AGENT)
    doc = await read_json(request)
    attempt = field(doc, "attempt", int)
    names = field(doc, "names", list)
    if not all(isinstance(n, str) for n in names):
        raise APIError(400, "names: must be a list of strings")
    svc = service(request)
    run_id = _path_int(request, "run")

    def work() -> dict[str, str]:
        with svc.db.transaction() as session:
            agent = _agent(session, doc)
            run = session.get(Run, run_id)
            if not reports.holds(run, agent.id, attempt):
                raise APIError(409, f"run {run_id} is not held by this agent")
            repository = session.get(Repository, run.repository_id)
            if run.fork and not repository.fork_secrets:
                return {}  # a fork's pull request gets none, unless the repository allows
            rows = session.scalars(
                select(Secret).where(
                    Secret.repository_id == run.repository_id, Secret.name.in_(names)
                )
            )
            return {
                s.name: svc.box.open(s.sealed, secret_context(run.repository_id, s.name))
                for s in rows
            }

    return JSONResponse({"secrets": await in_thread(work)})


def _path_int(request: Request, name: str) -> int:
    value = request.path_params[name]
    if not value.isdigit():
        raise APIError(404, f"no run {value[:20]!r}")
    return int(value)


# --- the app -------------------------------------------------------------------------


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse({"error": exc.message}, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code)


async def _reaper(svc: Service) -> None:
    """Requeue or error the runs whose agent stopped answering, every second."""
    while True:
        await asyncio.sleep(RECHECK)
        with contextlib.suppress(Exception):  # a busy database: try again next time
            if await in_thread(queue.reap, svc.db):
                svc.work.notify()
                svc.logs.notify()


def create_app(svc: Service) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        svc.work.bind(loop)
        svc.logs.bind(loop)
        reaper = asyncio.create_task(_reaper(svc))
        try:
            yield
        finally:
            reaper.cancel()

    v1 = API
    run = v1 + "/repos/{repo}/runs/{number}"
    routes = [
        Route(v1, root),
        Route(v1 + "/tokens", create_token, methods=["POST"]),
        Route(v1 + "/repos", list_repositories, methods=["GET"]),
        Route(v1 + "/repos", create_repository, methods=["POST"]),
        Route(v1 + "/repos/{repo}", get_repository),
        Route(v1 + "/repos/{repo}/runs", list_runs, methods=["GET"]),
        Route(v1 + "/repos/{repo}/runs", trigger, methods=["POST"]),
        Route(run, get_run),
        Route(run + "/cancel", cancel_run, methods=["POST"]),
        Route(run + "/restart", restart_run, methods=["POST"]),
        Route(run + "/logs", run_logs),
        Route(v1 + "/repos/{repo}/secrets", list_secrets),
        Route(v1 + "/repos/{repo}/secrets/{name}", put_secret, methods=["PUT"]),
        Route(v1 + "/repos/{repo}/secrets/{name}", delete_secret, methods=["DELETE"]),
        Route(v1 + "/agents", list_agents),
        Route(v1 + "/hooks/{repo}", webhook, methods=["POST"]),
        Route(v1 + "/agent/poll", agent_poll, methods=["POST"]),
        Route(v1 + "/agent/heartbeat", agent_heartbeat, methods=["POST"]),
        Route(v1 + "/agent/runs/{run}/reports", agent_reports, methods=["POST"]),
        Route(v1 + "/agent/runs/{run}/secrets", agent_secrets, methods=["POST"]),
    ]
    schema = openapi_document(routes)

    async def openapi(request: Request) -> Response:
        """This API's OpenAPI description."""
        return JSONResponse(schema)

    routes.append(Route(v1 + "/openapi.json", openapi))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={APIError: _api_error, HTTPException: _http_error},
    )
    app.state.service = svc
    return app
