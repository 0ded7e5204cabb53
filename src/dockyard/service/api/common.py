"""What every API handler shares.

The service, JSON errors, bounded bodies, tokens, paging, and the JSON shapes of
repositories and runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from dockyard.service import queue, sessions, tokens
from dockyard.service.artifacts import ArtifactStore
from dockyard.service.database import Database
from dockyard.service.models import (
    QUEUED,
    Agent,
    Repository,
    Run,
    Step,
)
from dockyard.service.notify import Notifier
from dockyard.service.retention import Retention
from dockyard.service.secrets import SecretBox

JSON_MAX = 64 << 10


REPORTS_MAX = 4 << 20


BODY_TIMEOUT = 30.0


PER_PAGE_MAX = 100


POLL_MAX = 30.0  # seconds a long poll may wait


FOLLOW_MAX = 3600.0  # seconds one log-follow request may last (then resume)
REAUTHORIZE = 5.0  # seconds between checks that a followed stream's caller may still read


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
    artifacts: ArtifactStore
    # how long ended runs are kept (default: for ever)
    retention: Retention = dataclasses.field(default_factory=Retention)


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


def field(
    doc: dict[str, Any],
    name: str,
    kind: type | tuple[type, ...],
    default: Any = ...,
    check: Callable[[Any], object] | None = None,
) -> Any:
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


def relative_path(path: str) -> bool:
    """Whether ``path`` is a plain relative path (a pipeline file's, an artifact's).

    That is 1024 characters at most, no NUL, no leading ``/``, no empty, ``.`` or ``..``
    part.
    """
    return (
        0 < len(path) <= 1024
        and "\0" not in path
        and not path.startswith("/")
        and all(part not in ("", ".", "..") for part in path.split("/"))
    )


def string_map(doc: dict[str, Any], name: str, key_re: re.Pattern[str]) -> dict[str, str]:
    value = field(doc, name, dict, {})
    if len(value) > 100 or not all(
        isinstance(k, str) and key_re.match(k) and isinstance(v, str) and len(v) <= 4096
        for k, v in value.items()
    ):
        raise APIError(400, f"{name}: must map names to strings")
    return value


async def authorize(request: Request, needed: str) -> str:
    """The caller's role, if it allows ``needed``; else 401 (no or unknown token) or 403.

    The token comes from ``Authorization: Bearer``, or else from the web UI's session
    cookie (:mod:`.sessions`), which must bring its CSRF value to change anything."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    from_session = not header and sessions.COOKIE in request.cookies
    if from_session:
        token = _session_token(request)
    elif scheme.lower() != "bearer" or not token:
        raise APIError(401, "an API token is required (Authorization: Bearer TOKEN)")

    def lookup() -> str | None:
        with service(request).db.transaction() as session:
            if from_session:  # a token, or a user signed in with a password
                return sessions.role_of(session, token)
            return tokens.role_of(session, token.strip())

    role = await in_thread(lookup)
    if role is None:
        raise APIError(401, "unknown API token")
    if not tokens.allows(role, needed):
        raise APIError(403, f"this needs a token of role {needed}; yours is {role}")
    return role


async def agent_token(request: Request) -> str:
    """The caller's agent token, once :func:`authorize` has accepted it for an agent route.

    Agents send ``Authorization: Bearer``; a web session is never an agent.
    """
    await authorize(request, tokens.AGENT)
    return request.headers.get("authorization", "").partition(" ")[2].strip()


def _session_token(request: Request) -> str:
    session = sessions.read(service(request).box, request)
    if session is None:
        raise APIError(401, "the session has expired; sign in again")
    if request.method not in sessions.SAFE_METHODS:
        try:
            sessions.check_csrf(request, session, request.headers.get(sessions.CSRF_HEADER))
        except sessions.Refused as e:
            raise APIError(403, str(e)) from None
    return session.token


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


def runs_json(session: Session, runs: Sequence[Run]) -> list[dict[str, Any]]:
    """The JSON of ``runs``, read in a fixed number of queries however many they are.

    It holds their repositories' names, the agents' names, where each ran, why queued
    ones wait.
    """
    if not runs:
        return []
    repositories = dict(
        session.execute(
            select(Repository.id, Repository.name).where(
                Repository.id.in_({r.repository_id for r in runs})
            )
        ).all()
    )
    agents = dict(session.execute(select(Agent.id, Agent.name)).all())
    ran_on: dict[int, int | None] = {r.id: r.agent_id for r in runs if r.agent_id is not None}
    ended = [r.id for r in runs if r.agent_id is None]
    if ended:  # a lease ends with the run; "where did it run" is its last step's agent
        last = (
            select(func.max(Step.id))
            .where(Step.run_id.in_(ended), Step.agent_id.is_not(None))
            .group_by(Step.run_id)
        )
        rows = session.execute(select(Step.run_id, Step.agent_id).where(Step.id.in_(last)))
        ran_on.update((run_id, agent_id) for run_id, agent_id in rows)
    live = queue.live_agents(session) if any(r.status == QUEUED for r in runs) else []
    return [
        {
            "id": run.id,
            "repository": repositories.get(run.repository_id),
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
            "agent": agents.get(ran_on.get(run.id) or 0),
            "labels": run.labels or {},
            "cancel_requested": run.cancel_requested,
            "waiting": queue.waiting_reason(session, run, live) if run.status == QUEUED else None,
            "created": iso(run.created),
            "started": iso(run.started),
            "finished": iso(run.finished),
        }
        for run in runs
    ]


def run_json(session: Session, run: Run, steps: bool = False) -> dict[str, Any]:
    """One run's JSON (:func:`runs_json`), with its steps if ``steps``."""
    (doc,) = runs_json(session, [run])
    if steps:
        rows = session.scalars(select(Step).where(Step.run_id == run.id).order_by(Step.id))
        names = dict(session.execute(select(Agent.id, Agent.name)).all())
        doc["steps"] = [
            {
                "name": s.name,
                "status": s.status,
                "exit_code": s.exit_code,
                "reason": s.reason,
                "duration": s.duration,
                "agent": names.get(s.agent_id) if s.agent_id is not None else None,
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
