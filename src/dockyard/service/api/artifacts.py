"""Artifacts: uploaded by the agent holding a run, listed and downloaded by users.

``PUT /agent/runs/{run}/artifacts?name=AGENT&attempt=N&step=S&path=P`` streams one file
(raw body) into the artifact store; ``GET /repos/{repo}/runs/{n}/artifacts`` lists a
run's, ``GET .../artifacts/{step}/{path}`` downloads one. The file served is found by
the digest the database holds for that run, step and path: no path from a request
ever reaches the filesystem.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from dockyard.service import reports, tokens
from dockyard.service.api.common import (
    BODY_TIMEOUT,
    NAME_RE,
    APIError,
    agent_token,
    authorize,
    find_run,
    in_thread,
    relative_path,
    service,
)
from dockyard.service.artifacts import TooLarge
from dockyard.service.models import Agent, Artifact, Run


async def _chunks(request: Request) -> AsyncIterator[bytes]:
    """The body, each piece due within :data:`BODY_TIMEOUT` seconds."""
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), BODY_TIMEOUT)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise APIError(408, "request body too slow") from None
        if chunk:
            yield chunk


async def upload(request: Request) -> Response:
    """Store one artifact file of a run the agent holds (raw body)."""
    token = await agent_token(request)
    query = request.query_params
    name, step, path = query.get("name", ""), query.get("step", ""), query.get("path", "")
    attempt = query.get("attempt", "")
    if not (NAME_RE.match(name) and attempt.isdigit() and 0 < len(step) <= 255):
        raise APIError(400, "name, attempt and step are required")
    if not relative_path(path):
        raise APIError(400, f"path {path[:100]!r}: must be relative, without . or ..")
    run_id = request.path_params["run"]
    svc = service(request)

    def check() -> tuple[int, int]:
        with svc.db.transaction() as session:
            agent = session.scalar(select(Agent).where(Agent.name == name))
            if agent is not None and not tokens.may_act_as(
                session, agent, tokens.id_of(session, token)
            ):
                raise APIError(403, f"agent {name} belongs to another agent token")
            run = session.get(Run, int(run_id)) if run_id.isdigit() else None
            if run is None or agent is None or not reports.holds(run, agent.id, int(attempt)):
                raise APIError(409, f"run {run_id[:20]} is not held by this agent")
            return run.id, agent.id

    held, agent_id = await in_thread(check)
    try:
        digest, size = await svc.artifacts.put(_chunks(request))
    except TooLarge as e:
        raise APIError(413, str(e)) from None

    def record() -> None:
        with svc.db.transaction() as session:
            run = session.get(Run, held)
            if not reports.holds(run, agent_id, int(attempt)):
                raise APIError(409, f"run {held} is no longer held by this agent")
            artifact = session.scalar(
                select(Artifact).where(
                    Artifact.run_id == held, Artifact.step == step, Artifact.path == path
                )
            )
            if artifact is None:
                session.add(Artifact(run_id=held, step=step, path=path, digest=digest, size=size))
            else:
                artifact.digest, artifact.size = digest, size

    await in_thread(record)
    return JSONResponse({"digest": digest, "size": size}, 201)


async def list_artifacts(request: Request) -> Response:
    """A run's artifacts: step, path, size, digest."""
    await authorize(request, tokens.READ)

    def work() -> list[dict[str, Any]]:
        with service(request).db.transaction() as session:
            run = find_run(session, request.path_params["repo"], request.path_params["number"])
            rows = session.scalars(
                select(Artifact)
                .where(Artifact.run_id == run.id)
                .order_by(Artifact.step, Artifact.path)
            )
            return [
                {"step": a.step, "path": a.path, "size": a.size, "digest": a.digest} for a in rows
            ]

    return JSONResponse({"items": await in_thread(work)})


async def download(request: Request) -> Response:
    """One artifact file, as an attachment."""
    await authorize(request, tokens.READ)
    svc = service(request)
    step, path = request.path_params["step"], request.path_params["path"]

    def work() -> str:
        with svc.db.transaction() as session:
            run = find_run(session, request.path_params["repo"], request.path_params["number"])
            digest = session.scalar(
                select(Artifact.digest).where(
                    Artifact.run_id == run.id, Artifact.step == step, Artifact.path == path
                )
            )
            if digest is None:
                raise APIError(404, f"run {run.number} has no artifact {step}/{path[:200]}")
            return digest

    digest = await in_thread(work)
    return FileResponse(
        svc.artifacts.path(digest),
        media_type="application/octet-stream",
        filename=path.rsplit("/", 1)[-1],
        headers={"X-Content-Type-Options": "nosniff", "Digest": digest},
    )
