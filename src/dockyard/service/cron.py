"""Cron schedules, and the runs they queue when their time has come.

Five fields (minute hour day-of-month month day-of-week, UTC), each ``*``, a number, a
range ``a-b``, a step ``*/n`` or ``a-b/n``, or a list of those; day-of-week 0-7 with 0
and 7 for Sunday. As in cron, when both day fields are restricted a day matching either
one is a match.

:func:`due_runs` queues the run of each schedule whose time has come, once however
many servers look: the schedule's ``next_run`` is moved on by a conditional UPDATE,
and only the server whose UPDATE changed the row queues the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from dockyard.service import queue
from dockyard.service.database import Database, rowcount
from dockyard.service.models import Repository, Schedule, now

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")
SEARCH_DAYS = 366 * 5  # Feb 29 on a Monday comes round within this


class CronError(ValueError):
    """A schedule that does not parse; the message names the field."""


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is *
    any_weekday: bool  # day of week is *

    def _day_matches(self, moment: datetime) -> bool:
        day = moment.day in self.days
        weekday = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return day and weekday
        return day or weekday

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute after ``moment``."""
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = candidate + timedelta(days=SEARCH_DAYS)
        while candidate < limit:
            if candidate.month not in self.months or not self._day_matches(candidate):
                candidate = candidate.replace(hour=0, minute=0) + timedelta(days=1)
            elif candidate.hour not in self.hours:
                candidate = candidate.replace(minute=0) + timedelta(hours=1)
            elif candidate.minute not in self.minutes:
                candidate += timedelta(minutes=1)
            else:
                return candidate
        raise CronError("never matches")


def parse_cron(spec: str) -> Cron:
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"{spec[:100]!r}: expected 5 fields (minute hour day month weekday)")
    values = [
        _field(text, bounds, name)
        for text, bounds, name in zip(fields, _RANGES, _NAMES, strict=True)
    ]
    weekdays = frozenset(d % 7 for d in values[4])
    return Cron(
        values[0], values[1], values[2], values[3], weekdays, fields[2] == "*", fields[4] == "*"
    )


def _field(text: str, bounds: tuple[int, int], name: str) -> frozenset[int]:
    low, high = bounds
    found: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                first, last = low, high
            elif "-" in body:
                first, last = (int(v) for v in body.split("-", 1))
            else:
                first = last = int(body)
                if step_text:
                    last = high
        except ValueError:
            raise CronError(f"{name}: {part!r} is not a number, range or step") from None
        if step < 1 or not low <= first <= last <= high:
            raise CronError(f"{name}: {part!r} is outside {low}-{high}")
        found.update(range(first, last + 1, step))
    return frozenset(found)


def due_runs(db: Database) -> int:
    """Queue a run for every schedule whose time has come; return how many."""
    queued = 0
    with db.transaction() as session:
        due = session.scalars(select(Schedule).where(Schedule.next_run <= now())).all()
        for schedule in due:
            following = parse_cron(schedule.spec).next_after(now())
            moved = session.execute(
                update(Schedule)
                .where(Schedule.id == schedule.id, Schedule.next_run == schedule.next_run)
                .values(next_run=following)
            )
            if rowcount(moved) != 1:
                continue  # another server took this one
            repository = session.get_one(Repository, schedule.repository_id)
            queue.enqueue(
                session,
                repository,
                event="cron",
                branch=schedule.branch,
                message=f"schedule {schedule.name}",
            )
            queued += 1
    return queued
