"""A repository's cron schedules (:mod:`..cron`): list (read), set and delete (admin)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.service import tokens
from dockyard.service.api.common import (
    NAME_RE,
    APIError,
    authorize,
    field,
    find_repository,
    in_thread,
    iso,
    read_json,
    service,
)
from dockyard.service.cron import CronError, parse_cron
from dockyard.service.database import rowcount
from dockyard.service.models import Schedule, now


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    return {
        "name": schedule.name,
        "schedule": schedule.spec,
        "branch": schedule.branch,
        "next_run": iso(schedule.next_run),
    }


async def list_schedules(request: Request) -> Response:
    """A repository's cron schedules and when each runs next."""
    await authorize(request, tokens.READ)

    def work() -> list[dict[str, Any]]:
        with service(request).db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            rows = session.scalars(
                select(Schedule)
                .where(Schedule.repository_id == repository.id)
                .order_by(Schedule.name)
            )
            return [schedule_json(s) for s in rows]

    return JSONResponse({"items": await in_thread(work)})


async def put_schedule(request: Request) -> Response:
    """Set a cron schedule from ``{"schedule": "0 3 * * 1-5", "branch": "main"}`` (admin).

    Five cron fields, in UTC; ``branch`` defaults to the repository's default branch."""
    await authorize(request, tokens.ADMIN)
    name = request.path_params["name"]
    if not NAME_RE.match(name):
        raise APIError(400, f"schedule name {name[:100]!r}: letters, digits, . _ - only")
    doc = await read_json(request)
    spec = field(doc, "schedule", str, check=lambda s: len(s) <= 255)
    branch = field(doc, "branch", str, None, check=lambda b: 0 < len(b) <= 255)
    try:
        following = parse_cron(spec).next_after(now())
    except CronError as e:
        raise APIError(400, f"schedule: {e}") from None

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            schedule = session.scalar(
                select(Schedule).where(
                    Schedule.repository_id == repository.id, Schedule.name == name
                )
            )
            if schedule is None:
                schedule = Schedule(repository_id=repository.id, name=name)
                session.add(schedule)
            schedule.spec, schedule.next_run = " ".join(spec.split()), following
            schedule.branch = branch or repository.default_branch
            return schedule_json(schedule)

    return JSONResponse(await in_thread(work))


async def delete_schedule(request: Request) -> Response:
    """Delete a cron schedule (admin)."""
    await authorize(request, tokens.ADMIN)

    def work() -> int:
        with service(request).db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            return rowcount(
                session.execute(
                    delete(Schedule).where(
                        Schedule.repository_id == repository.id,
                        Schedule.name == request.path_params["name"],
                    )
                )
            )

    if not await in_thread(work):
        raise APIError(404, "no such schedule")
    return Response(status_code=204)
