"""The REST API under ``/api/v1``: JSON in and out, errors as ``{"error": "..."}``.

Users (tokens of role read / write / admin, :mod:`.tokens`):

- ``GET|POST /repos``, ``GET /repos/{repo}``: repositories (POST: admin)
- ``GET|POST /repos/{repo}/runs``: runs, newest first, paged (POST: a manual run, write)
- ``GET /queue``: the queued runs of every repository, each saying why it waits
- ``GET /repos/{repo}/runs/{n}``: a run and its steps
- ``POST /repos/{repo}/runs/{n}/cancel``: cancel (write); ``.../restart``: run it again
  as a new run (write)
- ``GET /repos/{repo}/runs/{n}/logs``: log chunks as JSON (``?after=ID``), or followed
  as Server-Sent Events (``Accept: text/event-stream``; resumes after ``Last-Event-ID``)
- ``GET /repos/{repo}/secrets``, ``PUT|DELETE /repos/{repo}/secrets/{name}``, and the
  same under ``/secrets`` for global ones: admin; values are write-only
- ``GET /repos/{repo}/runs/{n}/artifacts[/{step}/{path}]``: list, download
- ``GET /repos/{repo}/schedules``, ``PUT|DELETE /repos/{repo}/schedules/{name}``: cron
- ``GET|POST /tokens``, ``DELETE /tokens/{id}``: API tokens (admin; :mod:`.access`)
- ``GET /agents``
- ``GET|POST /users``, ``PUT /users/{name}/password``, ``DELETE /users/{name}``: the
  web UI's users (admin); passwords are write-only

Every user route also takes the web UI's session cookie instead of a token; then a
request that changes something needs the session's CSRF value (:mod:`..sessions`).
The web UI's pages live outside ``/api`` (:mod:`dockyard.service.web`).

Forges: ``POST /hooks/{repo}``, signed (:mod:`.webhooks`), no token.
``GET /openapi.json``: every route, from this module's handlers (:mod:`.openapi`).
Agents (role agent): ``POST /agent/poll`` (long poll), ``/agent/heartbeat``,
``/agent/goodbye`` (a process stops: its runs requeued, its name free),
``/agent/runs/{id}/reports`` (:mod:`.reports`), ``/agent/runs/{id}/secrets``,
``PUT /agent/runs/{id}/artifacts``.

Every body is read with a size cap and a deadline before it is parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard.service import cron, queue, retention
from dockyard.service.api import (
    access,
    agents,
    artifacts,
    hooks,
    repos,
    runs,
    schedules,
    secrets,
    users,
)
from dockyard.service.api.common import JSON_MAX, RECHECK, APIError, Service, in_thread
from dockyard.service.openapi import API, openapi_document
from dockyard.service.web import SecurityHeaders, web_routes

__all__ = ["JSON_MAX", "APIError", "Service", "create_app"]
log = logging.getLogger("dockyard.service")


async def root(request: Request) -> Response:
    """The API's name and version (no token needed)."""
    return JSONResponse({"service": "dockyard", "api": "v1"})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse({"error": exc.message}, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code)


async def _reaper(svc: Service) -> None:
    """Every second: requeue or error the runs whose agent stopped answering, and queue
    the runs of cron schedules whose time has come; every :data:`retention.EVERY`
    seconds, delete the runs and artifacts past the retention policy."""
    retained = -math.inf
    while True:
        await asyncio.sleep(RECHECK)
        try:
            if await in_thread(queue.reap, svc.db):
                svc.work.notify()
                svc.logs.notify()
            if await in_thread(cron.due_runs, svc.db):
                svc.work.notify()
            if svc.retention.active and time.monotonic() - retained >= retention.EVERY:
                retained = time.monotonic()
                pruned = await in_thread(retention.apply, svc.db, svc.artifacts, svc.retention)
                if pruned.runs or pruned.blobs:
                    log.info(
                        "retention: %d runs and %d artifact blobs (%d bytes) deleted",
                        pruned.runs,
                        pruned.blobs,
                        pruned.freed,
                    )
        except Exception as e:  # a busy or unreachable database: try again next time
            log.warning("housekeeping failed: %s", e)


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
        Route(v1 + "/tokens", access.create_token, methods=["POST"]),
        Route(v1 + "/tokens", access.list_tokens, methods=["GET"]),
        Route(v1 + "/tokens/{id}", access.revoke_token, methods=["DELETE"]),
        Route(v1 + "/repos", repos.list_repositories, methods=["GET"]),
        Route(v1 + "/repos", repos.create_repository, methods=["POST"]),
        Route(v1 + "/repos/{repo}", repos.get_repository),
        Route(v1 + "/queue", runs.list_queue),
        Route(v1 + "/repos/{repo}/runs", runs.list_runs, methods=["GET"]),
        Route(v1 + "/repos/{repo}/runs", runs.trigger, methods=["POST"]),
        Route(run, runs.get_run),
        Route(run + "/cancel", runs.cancel_run, methods=["POST"]),
        Route(run + "/restart", runs.restart_run, methods=["POST"]),
        Route(run + "/logs", runs.run_logs),
        Route(run + "/artifacts", artifacts.list_artifacts),
        Route(run + "/artifacts/{step}/{path:path}", artifacts.download),
        Route(v1 + "/repos/{repo}/secrets", secrets.list_secrets),
        Route(v1 + "/repos/{repo}/secrets/{name}", secrets.put_secret, methods=["PUT"]),
        Route(v1 + "/repos/{repo}/secrets/{name}", secrets.delete_secret, methods=["DELETE"]),
        Route(v1 + "/secrets", secrets.list_secrets),
        Route(v1 + "/secrets/{name}", secrets.put_secret, methods=["PUT"]),
        Route(v1 + "/secrets/{name}", secrets.delete_secret, methods=["DELETE"]),
        Route(v1 + "/repos/{repo}/schedules", schedules.list_schedules),
        Route(v1 + "/repos/{repo}/schedules/{name}", schedules.put_schedule, methods=["PUT"]),
        Route(v1 + "/repos/{repo}/schedules/{name}", schedules.delete_schedule, methods=["DELETE"]),
        Route(v1 + "/agents", agents.list_agents),
        Route(v1 + "/users", users.list_users, methods=["GET"]),
        Route(v1 + "/users", users.add_user, methods=["POST"]),
        Route(v1 + "/users/{name}/password", users.set_password, methods=["PUT"]),
        Route(v1 + "/users/{name}", users.remove_user, methods=["DELETE"]),
        Route(v1 + "/hooks/{repo}", hooks.webhook, methods=["POST"]),
        Route(v1 + "/agent/poll", agents.agent_poll, methods=["POST"]),
        Route(v1 + "/agent/heartbeat", agents.agent_heartbeat, methods=["POST"]),
        Route(v1 + "/agent/goodbye", agents.agent_goodbye, methods=["POST"]),
        Route(v1 + "/agent/runs/{run}/reports", agents.agent_reports, methods=["POST"]),
        Route(v1 + "/agent/runs/{run}/secrets", agents.agent_secrets, methods=["POST"]),
        Route(v1 + "/agent/runs/{run}/artifacts", artifacts.upload, methods=["PUT"]),
    ]
    schema = openapi_document(routes)

    async def openapi(request: Request) -> Response:
        """This API's OpenAPI description."""
        return JSONResponse(schema)

    routes.append(Route(v1 + "/openapi.json", openapi))
    app = Starlette(
        routes=[*routes, *web_routes()],
        lifespan=lifespan,
        exception_handlers={APIError: _api_error, HTTPException: _http_error},
        middleware=[Middleware(SecurityHeaders)],
    )
    app.state.service = svc
    return app
