"""The log page's lines, newest first: a log's tail, and earlier lines on demand.

The last lines of a run's (or one step's) log, and the lines before a chunk when asked,
so a log of 100,000 lines opens with its tail and the browser never holds more than was
asked for.

Chunks are taken whole (an agent sends at most a few hundred lines in one), so a
chunk id is where the page resumes: the live stream follows after the newest chunk
read, "load earlier" asks for what comes before the oldest one shown. The number of
the first line sent is counted too, so line numbers (and links to them) are the same
as in the whole log, and so are colours an earlier escape set (:mod:`.ansi`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session

from dockyard.service.models import LogChunk
from dockyard.service.web import ansi

TAIL = 500  # lines the page opens with
MAX_LINES = 20_000  # lines one request may ask for
BATCH = 200  # chunks read at a time


def _matching(lines: list, step: str) -> list:
    return [line for line in lines if not step or line[0] == step]


def lines_before(
    db: Session, run_id: int, step: str, before: int | None, want: int = TAIL
) -> dict[str, Any]:
    """At least ``want`` lines in whole chunks before chunk ``before``, oldest first.

    The lines are ``step``'s (all sources if empty); ``before`` None is the end. With
    them come ``start`` (how many such lines come before them), ``last`` (the newest
    chunk id there is, to follow after) and ``colours`` (the ANSI colours each source
    of theirs starts in, :mod:`.ansi`).
    """
    want = max(1, min(want, MAX_LINES))
    last = db.scalar(select(func.max(LogChunk.id)).where(LogChunk.run_id == run_id)) or 0
    bound = last + 1 if before is None else before
    taken: list[tuple[int, list]] = []
    count = 0
    while count < want:
        rows = db.execute(
            select(LogChunk.id, LogChunk.lines)
            .where(LogChunk.run_id == run_id, LogChunk.id < bound)
            .order_by(LogChunk.id.desc())
            .limit(BATCH)
        ).all()
        if not rows:
            break
        for chunk_id, lines in rows:
            bound = chunk_id
            matching = _matching(lines, step)
            if matching:
                taken.append((chunk_id, matching))
                count += len(matching)
                if count >= want:
                    break
    taken.reverse()
    sources = {line[0] for _, lines in taken for line in lines}
    return {
        "chunks": [[chunk_id, lines] for chunk_id, lines in taken],
        "start": _count_before(db, run_id, step, bound),
        "last": last,
        "colours": ansi.states_before(db, run_id, step, bound, sources),
    }


def _count_before(db: Session, run_id: int, step: str, bound: int) -> int:
    """How many lines of ``step`` the chunks before ``bound`` hold."""
    if not step:  # counted by the database
        total = db.scalar(
            select(func.coalesce(func.sum(func.json_array_length(LogChunk.lines)), 0)).where(
                LogChunk.run_id == run_id, LogChunk.id < bound
            )
        )
        return int(total or 0)
    if db.get_bind().dialect.name == "sqlite":  # counted by the database too
        each = func.json_each(LogChunk.lines).table_valued("value")
        source: ColumnElement[Any] = func.json_extract(each.c.value, "$[0]")
    else:  # PostgreSQL
        each = func.json_array_elements(LogChunk.lines).table_valued("value")
        source = each.c.value.op("->>")(0)
    total = db.scalar(
        select(func.count())
        .select_from(LogChunk)
        .join(each, true())
        .where(LogChunk.run_id == run_id, LogChunk.id < bound, source == step)
    )
    return int(total or 0)
