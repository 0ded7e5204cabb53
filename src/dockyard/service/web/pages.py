"""The web UI's pages, rendered on the server from the database (Jinja2, autoescaped).

Every page needs a signed-in session (:mod:`..sessions`); what it shows of the
buttons follows the token's role, and the API checks the role again when a button is
used. Pages read the database directly, as the API handlers do, in a worker thread.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.templating import Jinja2Templates

from dockyard.service import sessions, testcases, tokens, users
from dockyard.service.api.agents import agents_json
from dockyard.service.api.common import (
    APIError,
    find_repository,
    find_run,
    in_thread,
    read_body,
    run_json,
    runs_json,
    service,
)
from dockyard.service.database import Database
from dockyard.service.models import FINISHED, QUEUED, Artifact, LogChunk, Repository, Run, Step
from dockyard.service.web import graph, logtail

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.globals["ICONS"] = {  # every status has a word and an icon, not a colour only
    "queued": "⏳",
    "pending": "…",
    "running": "▶",
    "success": "✔",
    "passed": "✔",
    "failure": "✖",
    "failed": "✖",
    "timeout": "⏱",
    "cancelled": "⊘",
    "error": "⚠",
    "skipped": "↷",
    "not run": "○",
}
STATUSES = (QUEUED, "running", *FINISHED)
PER_PAGE = 30
FORM_MAX = 8 << 10  # bytes of a sign-in or sign-out form
LOG_BATCH = 1000  # chunks read at a time for a raw download
SIGN_INS = users.Guard()  # failed sign-ins per client and per user name


class SignInNeeded(Exception):
    """No session, an expired one, or its token is gone."""


@dataclass(frozen=True)
class Viewer:
    role: str
    csrf: str
    user: str = ""  # the user's name; "" when signed in with an API token

    @property
    def can_write(self) -> bool:
        return tokens.allows(self.role, tokens.WRITE)

    @property
    def is_admin(self) -> bool:
        return tokens.allows(self.role, tokens.ADMIN)


Page = Callable[[Request, Viewer], Awaitable[Response]]


def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` for a signed-in viewer; others are sent to the sign-in page.

    An API error becomes an error page."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request, await _viewer(request))
        except SignInNeeded:
            target = urllib.parse.quote(request.url.path, safe="/")
            return RedirectResponse(f"/login?next={target}", 303)
        except sessions.Refused as e:
            return render(request, "error.html", {"message": str(e)}, 403)
        except APIError as e:
            return render(request, "error.html", {"message": e.message}, e.status)

    return wrapper


async def _viewer(request: Request) -> Viewer:
    session = sessions.read(service(request).box, request)
    if session is None:
        raise SignInNeeded

    def lookup() -> str | None:
        with service(request).db.transaction() as db:
            return sessions.role_of(db, session.token)

    role = await in_thread(lookup)
    if role not in tokens.USER_ROLES:
        raise SignInNeeded
    who = session.token.removeprefix(users.SUBJECT_PREFIX).rpartition(":")[0]
    return Viewer(role, session.csrf, who if session.token.startswith(users.SUBJECT_PREFIX) else "")


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    return TEMPLATES.TemplateResponse(
        request, template, context, status_code=status, headers={"Cache-Control": "no-store"}
    )


async def _form(request: Request, cap: int = FORM_MAX) -> dict[str, str]:
    """A small urlencoded form, read with a cap and the API's deadline."""
    body = await read_body(request, cap)
    try:
        pairs = urllib.parse.parse_qsl(body.decode(), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise APIError(400, "a malformed form") from None
    return dict(pairs)


async def form_of(request: Request, cap: int = FORM_MAX) -> dict[str, str]:
    """The form a signed-in viewer posted.

    It is refused (:class:`..sessions.Refused`) without the session's CSRF value or from
    another site."""
    session = sessions.read(service(request).box, request)
    if session is None:
        raise SignInNeeded
    form = await _form(request, cap)
    sessions.check_csrf(request, session, form.get("csrf"))
    return form


def _safe_next(target: str | None) -> str:
    """Only a path on this server (never ``//host`` or ``/\\host``) to go back to."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


# --- signing in and out --------------------------------------------------------------


async def login_form(request: Request) -> Response:
    return render(request, "login.html", {"next": _safe_next(request.query_params.get("next"))})


async def login(request: Request) -> Response:
    """Check a user's password or an API token, then set the session cookie.

    The password comes as ``name`` and ``password``, the token as ``token``. The form
    comes from this site only (``Origin``; the cookie is SameSite=Strict, and there is
    no session yet whose CSRF value it could carry). Failures are rate-limited per
    client, and per user name."""
    try:
        sessions.check_origin(request)
        form = await _form(request)
    except sessions.Refused as e:
        return render(request, "error.html", {"message": str(e)}, 403)
    except APIError as e:
        return render(request, "error.html", {"message": e.message}, e.status)
    target = _safe_next(form.get("next"))
    client = request.client.host if request.client else "?"
    name = form.get("name", "").strip() if "password" in form else None
    if SIGN_INS.take(client, name) is not None:
        message = "too many failed sign-ins; try again in a minute"
        return render(request, "login.html", {"next": target, "error": message}, 429)
    db = service(request).db
    if name is not None:
        subject = await _check_password(db, name, form["password"])
        failure = "unknown user or wrong password"
    else:
        token = form.get("token", "").strip()

        def lookup() -> str | None:
            with db.transaction() as session:
                return tokens.role_of(session, token)

        role = await in_thread(lookup) if token else None
        subject = token if role in tokens.USER_ROLES else None
        failure = "unknown API token"
    if subject is None:
        return render(request, "login.html", {"next": target, "error": failure}, 401)
    SIGN_INS.succeeded(client, name)
    value, _ = sessions.create(service(request).box, subject)
    response = RedirectResponse(target, 303)
    response.set_cookie(
        sessions.COOKIE, value, max_age=sessions.LIFETIME, **sessions.cookie_options(request)
    )
    return response


async def _check_password(db: Database, name: str, password: str) -> str | None:
    """The session subject of user ``name`` if ``password`` is theirs (bcrypt in its
    own pool), else None. Hash and subject are read together: a password set meanwhile
    makes the subject stale, never the old password good."""

    def stored() -> tuple[str | None, str | None]:
        if not users.NAME_RE.match(name):
            return None, None
        with db.transaction() as session:
            return users.password_and_subject(session, name)

    found, subject = await in_thread(stored)
    return subject if await users.in_pool(users.verify, found, password) else None


async def logout(request: Request) -> Response:
    session = sessions.read(service(request).box, request)
    if session is not None:
        try:
            form = await _form(request)
            sessions.check_csrf(request, session, form.get("csrf"))
        except sessions.Refused as e:
            return render(request, "error.html", {"message": str(e)}, 403)
        except APIError as e:
            return render(request, "error.html", {"message": e.message}, e.status)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(sessions.COOKIE, **sessions.cookie_options(request))
    return response


# --- repositories and runs -----------------------------------------------------------


def _page_number(request: Request) -> int:
    text = request.query_params.get("page", "1")
    return max(1, min(int(text), 1_000_000)) if text.isdigit() else 1


def _duration(run: Run) -> float | None:
    if run.started is None:
        return None
    end: datetime = run.finished or run.started
    return (end - run.started).total_seconds()


def _run_row(run: Run) -> dict[str, Any]:
    return {
        "number": run.number,
        "status": run.status,
        "event": run.event,
        "branch": run.branch,
        "commit": (run.commit or "")[:8],
        "message": run.message.split("\n", 1)[0][:200],
        "author": run.author,
        "duration": _duration(run),
        "created": run.created,
    }


@page
async def repositories(request: Request, viewer: Viewer) -> Response:
    """Every repository (filtered by name), with its last run."""
    name = request.query_params.get("q", "")[:100]
    number = _page_number(request)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as db:
            where = Repository.name.contains(name, autoescape=True)
            total = db.scalar(select(func.count(Repository.id)).where(where))
            rows = db.execute(
                select(Repository, Run)
                .outerjoin(
                    Run,
                    (Run.repository_id == Repository.id) & (Run.number == Repository.run_count),
                )
                .where(where)
                .order_by(Repository.name)
                .offset((number - 1) * PER_PAGE)
                .limit(PER_PAGE)
            ).all()
            items = [
                {"name": repo.name, "last": _run_row(run) if run else None} for repo, run in rows
            ]
            return {"items": items, "total": total}

    found = await in_thread(work)
    return render(
        request,
        "repositories.html",
        {"viewer": viewer, "q": name, **found, **_pages(request, number, found["total"])},
    )


def _pages(request: Request, number: int, total: int) -> dict[str, Any]:
    """The page number, and links to the pages before and after with the same filters."""

    def link(to: int) -> str:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]
        return "?" + urllib.parse.urlencode([*query, ("page", str(to))])

    return {
        "page": number,
        "previous_url": link(number - 1) if number > 1 else None,
        "next_url": link(number + 1) if number * PER_PAGE < total else None,
    }


@page
async def runs(request: Request, viewer: Viewer) -> Response:
    """A repository's runs, newest first, filtered by status and branch, paged."""
    status = request.query_params.get("status", "")
    status = status if status in STATUSES else ""
    branch = request.query_params.get("branch", "")[:255]
    number = _page_number(request)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as db:
            repository = find_repository(db, request.path_params["repo"])
            where = [Run.repository_id == repository.id]
            if status:
                where.append(Run.status == status)
            if branch:
                where.append(Run.branch == branch)
            total = db.scalar(select(func.count(Run.id)).where(*where))
            rows = db.scalars(
                select(Run)
                .where(*where)
                .order_by(Run.number.desc())
                .offset((number - 1) * PER_PAGE)
                .limit(PER_PAGE)
            )
            return {"repo": repository.name, "items": [_run_row(r) for r in rows], "total": total}

    found = await in_thread(work)
    context = {"viewer": viewer, "status": status, "branch": branch, "statuses": STATUSES}
    return render(
        request, "runs.html", {**context, **found, **_pages(request, number, found["total"])}
    )


def _test_report(steps: list[dict[str, Any]], cases: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The JUnit counts of ``steps``, their failed test cases (with message and output)
    and then the others."""
    reported = [s for s in steps if s.get("tests")]
    if not reported:
        return None
    counts = {
        k: sum(s["tests"].get(k, 0) for s in reported) for k in ("passed", "failed", "skipped")
    }
    failed = [c for c in cases if c["status"] == "failed"]
    if not failed:  # a run from before test cases were kept: the names only
        failed = [
            {"step": s["name"], "name": name, "status": "failed", "message": "", "output": ""}
            for s in reported
            for name in s["tests"].get("failing", [])
        ]
    others = [c for c in cases if c["status"] != "failed"]
    return {**counts, "failed_cases": failed, "other_cases": others, "steps": reported}


def _with_graph(db: Session, found: Run, doc: dict[str, Any]) -> None:
    """Each step's ``depends_on``; a planned step of an ended run did not run."""
    rows = db.execute(select(Step.name, Step.depends_on).where(Step.run_id == found.id))
    waits: dict[str, list[str] | None] = {name: depends_on for name, depends_on in rows}
    for step in doc["steps"]:
        step["depends_on"] = waits.get(step["name"]) or []
        if step["status"] == testcases.PENDING and doc["status"] in FINISHED:
            step["status"] = "not run"


@page
async def run(request: Request, viewer: Viewer) -> Response:
    """A run: its steps as a graph, test report, artifacts, and cancel / restart for writers."""

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as db:
            found = find_run(db, request.path_params["repo"], request.path_params["number"])
            doc = run_json(db, found, steps=True)
            doc["duration"] = _duration(found)
            _with_graph(db, found, doc)
            artifacts = db.scalars(
                select(Artifact)
                .where(Artifact.run_id == found.id)
                .order_by(Artifact.step, Artifact.path)
            )
            doc["artifacts"] = [{"step": a.step, "path": a.path, "size": a.size} for a in artifacts]
            doc["cases"] = testcases.test_report(db, found.id)
            return doc

    doc = await in_thread(work)
    context = {
        "viewer": viewer,
        "run": doc,
        "ended": doc["status"] in FINISHED,
        "graph": graph.layout(doc["steps"]),
        "report": _test_report(doc["steps"], doc["cases"]),
    }
    return render(request, "run.html", context)


@page
async def log(request: Request, viewer: Viewer) -> Response:
    """A run's log, or one step's (with its test report).

    The page loads the log's tail (:func:`log_lines`), then follows the API's event
    stream after it."""
    step = request.query_params.get("step", "")[:255]

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as db:
            found = find_run(db, request.path_params["repo"], request.path_params["number"])
            doc = run_json(db, found, steps=True)
            doc["cases"] = testcases.test_report(db, found.id, step) if step else []
            return doc

    doc = await in_thread(work)
    steps = [s for s in doc["steps"] if s["name"] == step]
    context = {
        "viewer": viewer,
        "run": doc,
        "step": step,
        "report": _test_report(steps, doc["cases"]) if step else None,
        "tail": logtail.TAIL,
    }
    return render(request, "log.html", context)


async def log_lines(request: Request) -> Response:
    """Lines of a run's log as JSON, newest first (:func:`.logtail.lines_before`).

    Query: ``?step=S``, ``before=CHUNK`` (default: the end), ``lines=N``."""
    try:
        await _viewer(request)
    except SignInNeeded:
        return JSONResponse({"error": "sign in again"}, 401)
    step = request.query_params.get("step", "")[:255]
    before_text = request.query_params.get("before", "")
    want_text = request.query_params.get("lines", str(logtail.TAIL))
    if not (before_text == "" or before_text.isdigit()) or not want_text.isdigit():
        return JSONResponse({"error": "before and lines must be numbers"}, 400)
    before = int(before_text) if before_text else None

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as db:
            found = find_run(db, request.path_params["repo"], request.path_params["number"])
            return logtail.lines_before(db, found.id, step, before, int(want_text[:6]))

    try:
        found = await in_thread(work)
    except APIError as e:
        return JSONResponse({"error": e.message}, e.status)
    return JSONResponse(found, headers={"Cache-Control": "no-store"})


@page
async def raw_log(request: Request, viewer: Viewer) -> Response:
    """A run's log (or one step's, ``?step=``) as plain text, to download."""
    step = request.query_params.get("step", "")
    repo, number = request.path_params["repo"], request.path_params["number"]
    db = service(request).db

    def run_id() -> int:
        with db.transaction() as session:
            return find_run(session, repo, number).id

    def batch(after: int) -> list[tuple[int, list]]:
        with db.transaction() as session:
            rows = session.scalars(
                select(LogChunk)
                .where(LogChunk.run_id == found, LogChunk.id > after)
                .order_by(LogChunk.id)
                .limit(LOG_BATCH)
            )
            return [(c.id, c.lines) for c in rows]

    found = await in_thread(run_id)

    async def text() -> AsyncIterator[bytes]:
        after = 0
        while chunks := await in_thread(batch, after):
            yield "".join(_raw_lines(chunks, step)).encode()
            after = chunks[-1][0]

    name = f"{repo}-{number}{'-' + step if step else ''}.log"
    disposition = "attachment; filename*=UTF-8''" + urllib.parse.quote(name, safe="")
    return StreamingResponse(
        text(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": disposition, "Cache-Control": "no-store"},
    )


def _raw_lines(chunks: list[tuple[int, list]], step: str) -> Iterator[str]:
    for _, lines in chunks:
        for source, line, _note in lines:
            if not step:
                yield f"[{source}] {line}\n" if source else f"{line}\n"
            elif source == step:
                yield f"{line}\n"


@page
async def agents(request: Request, viewer: Viewer) -> Response:
    """The agents, and the queued runs no agent takes, with the reason."""

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as db:
            return {"agents": agents_json(db), "waiting": _waiting(db)}

    return render(request, "agents.html", {"viewer": viewer, **await in_thread(work)})


def _waiting(db: Session) -> list[dict[str, Any]]:
    """The oldest queued runs and why each waits, read in one batch (:func:`runs_json`)."""
    queued = db.scalars(select(Run).where(Run.status == QUEUED).order_by(Run.id).limit(100))
    return [
        {"repo": doc["repository"], "number": doc["number"], "reason": doc["waiting"]}
        for doc in runs_json(db, queued.all())
        if doc["waiting"]
    ]
