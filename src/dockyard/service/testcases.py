"""What the web UI shows of a run beyond its steps' states: its graph and test cases.

The graph the steps form is stored from the agent's ``plan`` report; each step's JUnit
test cases, failed ones with their message and output, from its ``tests`` report
(:mod:`dockyard.ci.junit` bounds them).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, delete, select
from sqlalchemy.orm import Session

from dockyard.service.models import JUnitCase, Run, Step

MAX_CASES = 1000  # per step, as dockyard.ci.junit keeps them
PENDING = "pending"  # a planned step that has not started


def store_plan(session: Session, run: Run, steps: list[tuple[str, list[str]]]) -> None:
    """Store every step of the run's pipeline, with the steps it waits for.

    A step left from an earlier attempt is pending again.
    """
    known = {s.name: s for s in session.scalars(select(Step).where(Step.run_id == run.id))}
    for name, depends_on in steps:
        step = known.get(name)
        if step is None:
            step = Step(run_id=run.id, name=name, status=PENDING, attempt=run.attempt)
            session.add(step)
        elif step.attempt != run.attempt:
            step.status, step.attempt, step.exit_code, step.reason = PENDING, run.attempt, None, ""
            step.started = step.finished = None
            step.duration, step.tests = 0.0, None
        step.depends_on = list(dict.fromkeys(depends_on))


def store_cases(session: Session, run: Run, step: str, cases: list[dict[str, str]]) -> None:
    """A step's test cases, replacing what an earlier attempt stored."""
    session.execute(delete(JUnitCase).where(JUnitCase.run_id == run.id, JUnitCase.step == step))
    session.add_all(JUnitCase(run_id=run.id, step=step, **c) for c in cases[:MAX_CASES])


def test_report(
    session: Session, run_id: int, step: str | None = None, limit: int = 2000
) -> list[dict[str, Any]]:
    """The run's (or one step's) test cases: failed, then skipped, then passed.

    Failed ones carry their step, message and output; cases keep report order within
    each group.
    """
    order = case((JUnitCase.status == "failed", 0), (JUnitCase.status == "skipped", 1), else_=2)
    where = [JUnitCase.run_id == run_id]
    if step is not None:
        where.append(JUnitCase.step == step)
    rows = session.scalars(
        select(JUnitCase).where(*where).order_by(order, JUnitCase.id).limit(limit)
    )
    return [
        {
            "step": c.step,
            "name": c.name,
            "status": c.status,
            "message": c.message,
            "output": c.output,
        }
        for c in rows
    ]
