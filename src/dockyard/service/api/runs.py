"""Runs: list, the queue, trigger, restart, cancel, and their logs.

Logs come as JSON or as Server-Sent Events.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from dockyard.service import queue, tokens
from dockyard.service.api.common import (
    ENV_RE,
    FOLLOW_MAX,
    REAUTHORIZE,
    RECHECK,
    APIError,
    authorize,
    field,
    find_repository,
    find_run,
    in_thread,
    page_args,
    paged,
    read_json,
    run_json,
    runs_json,
    service,
    string_map,
)
from dockyard.service.database import Database
from dockyard.service.models import (
    CANCELLED,
    FINISHED,
    QUEUED,
    LogChunk,
    Repository,
    Run,
    now,
)


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
            return paged(runs_json(session, rows), page, per_page, total or 0)

    return JSONResponse(await in_thread(work))


async def list_queue(request: Request) -> Response:
    """The queued runs of every repository, oldest first, paged, each saying why it waits.

    The reason is ``waiting``: no agent has the labels it needs, or none is free."""
    await authorize(request, tokens.READ)
    page, per_page = page_args(request)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            where = Run.status == QUEUED
            total = session.scalar(select(func.count(Run.id)).where(where))
            rows = session.scalars(
                select(Run)
                .where(where)
                .order_by(Run.id)
                .offset((page - 1) * per_page)
                .limit(per_page)
            ).all()
            return paged(runs_json(session, rows), page, per_page, total or 0)

    return JSONResponse(await in_thread(work))


async def trigger(request: Request) -> Response:
    """A manual run of ``branch`` at ``commit``, with extra ``env``.

    ``branch`` defaults to the repository's; ``commit`` to the branch's head when the
    agent fetches it."""
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
    """A new run of what an ended run ran: its commit, branch, event and env.

    It needs the labels its pipeline asked for, learned by the first run (the
    repository's own, as they are now, still win): no agent that lacks them takes it
    only to hand it back."""
    await authorize(request, tokens.WRITE)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            old = find_run(session, request.path_params["repo"], request.path_params["number"])
            if old.status not in FINISHED:
                raise APIError(409, f"run {old.number} has not ended ({old.status})")
            repository = session.get_one(Repository, old.repository_id)
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
                labels={**(old.labels or {}), **repository.labels},
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
    """A queued run is cancelled at once; a running one at its agent's next heartbeat.

    The agent hears of it then, and kills the step's containers."""
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
    """A run's log: chunks after ``?after=ID`` as JSON, or followed as Server-Sent Events.

    Follow it with ``Accept: text/event-stream``; it resumes after ``Last-Event-ID``."""
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
        _follow(request, repo, number, after, chunks, status),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _follow(
    request: Request, repo: str, number: str, after: int, chunks: list, status: str
) -> AsyncIterator[bytes]:
    """The SSE stream of a followed log. The caller is authorized again every
    :data:`REAUTHORIZE` seconds: a token revoked, or a user removed or given a new
    password, ends the streams already open too (an ``event: denied``)."""
    svc = service(request)
    deadline = time.monotonic() + FOLLOW_MAX
    authorized = time.monotonic()
    idle = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - authorized >= REAUTHORIZE:
            try:
                await authorize(request, tokens.READ)
            except APIError as e:
                yield f"event: denied\ndata: {json.dumps({'error': e.message})}\n\n".encode()
                return
            authorized = time.monotonic()
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
