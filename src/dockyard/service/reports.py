"""What an agent reports about the run it holds: log lines, step states, the end; the
steps' graph once the pipeline is read (``plan``) and each step's JUnit test cases
(``tests``, :mod:`.testcases`).

Reports are numbered by the agent (``seq``, from 1 per attempt) and sent in order; the
run remembers the last one stored (``acked_seq``). An agent whose request failed sends
the same reports again, and the server skips those at or below ``acked_seq``: a
dropped connection neither loses nor duplicates a line. Reports about a run the agent
no longer holds (finished, cancelled and closed, or leased to another agent after its
lease ran out) are refused whole and change nothing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.service import testcases
from dockyard.service.models import (
    CANCELLED,
    FAILURE,
    RUNNING,
    SUCCESS,
    LogChunk,
    Run,
    Step,
    now,
)

MAX_LINE = 16 << 10  # characters of one log line kept; longer ones are cut
MAX_LOG = 64 << 20  # characters of log kept per run (a step printing forever fills no disk)
Text = Annotated[str, Field(max_length=MAX_LINE)]
Name = Annotated[str, Field(max_length=255)]


class _Report(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq: int = Field(ge=1)


class LogReport(_Report):
    kind: Literal["log"]
    lines: list[tuple[Name, Text, bool]] = Field(max_length=1000)  # source, text, note


class StepReport(_Report):
    kind: Literal["step"]
    name: Name
    status: Literal["running", "success", "failure", "timeout", "skipped", "cancelled"]
    exit_code: int | None = None
    duration: float = 0.0
    reason: Text = ""
    tests: dict[str, int | list[Name]] | None = None


class StartReport(_Report):
    kind: Literal["start"]
    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{40,64}$")]


class PlannedStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    depends_on: list[Name] = Field(default_factory=list, max_length=1000)


class PlanReport(_Report):
    kind: Literal["plan"]
    steps: list[PlannedStep] = Field(max_length=1000)


class TestCaseReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text
    status: Literal["passed", "failed", "skipped"]
    message: Text = ""
    output: Text = ""


class TestsReport(_Report):
    kind: Literal["tests"]
    step: Name
    cases: list[TestCaseReport] = Field(max_length=testcases.MAX_CASES)


class FinishReport(_Report):
    kind: Literal["finish"]
    status: Literal["success", "failure", "cancelled"]
    error: Text = ""


Report = Annotated[
    LogReport | StepReport | StartReport | FinishReport | PlanReport | TestsReport,
    Field(discriminator="kind"),
]
REPORTS = TypeAdapter(list[Report])


class StaleReport(Exception):
    """The agent no longer holds the run it reports about."""


def holds(run: Run | None, agent_id: int, attempt: int) -> bool:
    return (
        run is not None
        and run.status == RUNNING
        and run.agent_id == agent_id
        and run.attempt == attempt
    )


def store_reports(
    session: Session, run_id: int, agent_id: int, attempt: int, reports: list[Report]
) -> int:
    """Store the reports not stored yet; return the run's ``acked_seq``."""
    run = session.get(Run, run_id)
    if not holds(run, agent_id, attempt):
        raise StaleReport(f"run {run_id} is not held by this agent (attempt {attempt})")
    for report in sorted(reports, key=lambda r: r.seq):
        if report.seq <= run.acked_seq:
            continue  # a resend of what is stored
        if report.seq != run.acked_seq + 1:
            break  # a gap: the agent resends from acked_seq + 1
        _store(session, run, agent_id, report)
        run.acked_seq = report.seq
    return run.acked_seq


def _store(session: Session, run: Run, agent_id: int, report: Report) -> None:
    if isinstance(report, LogReport):
        size = sum(len(source) + len(text) for source, text, _ in report.lines)
        if not report.lines or run.log_size > MAX_LOG:
            return  # acknowledged, not kept: the log is full
        lines = [list(line) for line in report.lines]
        run.log_size += size
        if run.log_size > MAX_LOG:
            lines.append(["", f"log over {MAX_LOG} characters: the rest is not kept", True])
        session.add(LogChunk(run_id=run.id, attempt=run.attempt, lines=lines))
    elif isinstance(report, StepReport):
        step = session.scalar(select(Step).where(Step.run_id == run.id, Step.name == report.name))
        if step is None:
            step = Step(run_id=run.id, name=report.name)
            session.add(step)
        step.status, step.agent_id, step.attempt = report.status, agent_id, run.attempt
        if report.status == RUNNING:
            step.started, step.finished, step.exit_code = now(), None, None
        else:
            step.finished, step.exit_code = now(), report.exit_code
            step.duration, step.reason, step.tests = report.duration, report.reason, report.tests
    elif isinstance(report, StartReport):
        run.commit = report.commit
    elif isinstance(report, PlanReport):
        testcases.store_plan(session, run, [(s.name, s.depends_on) for s in report.steps])
    elif isinstance(report, TestsReport):
        testcases.store_cases(session, run, report.step, [c.model_dump() for c in report.cases])
    else:
        status = report.status
        if run.cancel_requested:
            status = CANCELLED
        elif status not in (SUCCESS, FAILURE, CANCELLED):
            status = FAILURE
        run.status, run.error, run.finished = status, report.error, now()
        run.agent_id, run.lease_until = None, None
