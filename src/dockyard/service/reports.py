"""What an agent reports about the run it holds, stored once and in order.

Log lines, step states, the labels its pipeline needs, the end; the steps' graph once
the pipeline is read (``plan``) and each step's JUnit test cases (``tests``,
:mod:`.testcases`).

Reports are numbered by the agent (``seq``, from 1 per attempt) and sent in order; the
run remembers the last one stored (``acked_seq``). An agent whose request failed sends
the same reports again, and the server skips those at or below ``acked_seq``: a
dropped connection neither loses nor duplicates a line. Reports about a run the agent
no longer holds (finished, cancelled and closed, or leased to another agent after its
lease ran out) are refused whole and change nothing.

A ``labels`` report names what the pipeline file asks of an agent (its ``labels:``,
known only once the commit is checked out). They may not contradict the repository's
labels (which every run of it needs): then the run fails. If the reporting agent lacks
some, the run goes back to the queue needing them all, for an agent that has them; its
attempt is given back (the agent did not die) and later reports from it are refused.
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
    QUEUED,
    RUNNING,
    SUCCESS,
    Agent,
    LogChunk,
    Repository,
    Run,
    Step,
    now,
)

MAX_LINE = 16 << 10  # characters of one log line kept; longer ones are cut
MAX_LOG = 64 << 20  # characters of log kept per run (a step printing forever fills no disk)
Text = Annotated[str, Field(max_length=MAX_LINE)]
Name = Annotated[str, Field(max_length=255)]
LabelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")]


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


class LabelsReport(_Report):
    kind: Literal["labels"]
    labels: dict[LabelName, Annotated[str, Field(max_length=4096)]] = Field(max_length=100)


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
    LogReport | StepReport | StartReport | LabelsReport | FinishReport | PlanReport | TestsReport,
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
    if run is None or not holds(run, agent_id, attempt):
        raise StaleReport(f"run {run_id} is not held by this agent (attempt {attempt})")
    acked = run.acked_seq
    for report in sorted(reports, key=lambda r: r.seq):
        if report.seq <= run.acked_seq:
            continue  # a resend of what is stored
        if report.seq != run.acked_seq + 1:
            break  # a gap: the agent resends from acked_seq + 1
        _store(session, run, agent_id, report)
        run.acked_seq = acked = report.seq
        if not holds(run, agent_id, attempt):
            break  # handed back (labels) or ended: nothing after it is this agent's
    return acked


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
    elif isinstance(report, LabelsReport):
        _relabel(session, run, agent_id, report.labels)
    elif isinstance(report, PlanReport):
        testcases.store_plan(session, run, [(s.name, s.depends_on) for s in report.steps])
    elif isinstance(report, TestsReport):
        testcases.store_cases(session, run, report.step, [c.model_dump() for c in report.cases])
    else:
        status: str = report.status
        if run.cancel_requested:
            status = CANCELLED
        elif status not in (SUCCESS, FAILURE, CANCELLED):
            status = FAILURE
        run.status, run.error, run.finished = status, report.error, now()
        run.agent_id, run.lease_until = None, None


def _relabel(session: Session, run: Run, agent_id: int, labels: dict[str, str]) -> None:
    """The pipeline's ``labels``: the run fails if they contradict its repository's,
    goes back to the queue if the agent holding it lacks some, else goes on."""
    repository = session.get(Repository, run.repository_id)
    bound = repository.labels if repository else {}
    conflicts = [f"{k}={v}" for k, v in sorted(labels.items()) if bound.get(k, v) != v]
    if conflicts:
        note = f"labels: the pipeline asks for {', '.join(conflicts)}; " + (
            "this repository's runs need "
            + ", ".join(f"{k}={bound[k]}" for k in sorted(bound) if k in labels)
        )
        _note(session, run, note)
        run.status, run.error, run.finished = FAILURE, note, now()
        run.agent_id, run.lease_until = None, None
        return
    run.labels = {**labels, **bound}
    agent = session.get(Agent, agent_id)
    have = agent.labels if agent else {}
    missing = [f"{k}={v}" for k, v in sorted(run.labels.items()) if have.get(k) != v]
    if not missing:
        return
    name = agent.name if agent else agent_id
    _note(session, run, f"agent {name} lacks {', '.join(missing)}: back in the queue")
    run.status, run.attempt = QUEUED, run.attempt - 1
    run.agent_id, run.lease_until, run.started = None, None, None


def _note(session: Session, run: Run, text: str) -> None:
    session.add(LogChunk(run_id=run.id, attempt=run.attempt, lines=[["", text, True]]))
