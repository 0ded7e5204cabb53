"""What a run reports: per-step results, the run's result, and live events.

A :class:`RunResult` is what ``run.json`` and ``--json`` hold (:meth:`RunResult.to_json`);
:class:`Events` is how a caller (the CLI) follows a run as it happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # counted by steps with reports; not imported to run or list the rest
    from dockyard.ci.junit import TestCounts

# Step statuses
SUCCESS = "success"
FAILURE = "failure"  # exited non-zero, or could not be run
TIMEOUT = "timeout"  # killed at its timeout
SKIPPED = "skipped"  # not run: its ``when`` did not match
CANCELLED = "cancelled"  # interrupted (Ctrl-C) before or while it ran
RUNNING = "running"  # started, not ended: what the record says meanwhile
FAILED = (FAILURE, TIMEOUT)


@dataclass
class StepResult:
    """How one step ended."""

    name: str
    status: str
    exit_code: int | None = None
    duration: float = 0.0  # seconds
    reason: str = ""  # why it failed or was skipped, in a few words
    ignored: bool = False  # failed with ``failure: ignore``: the pipeline goes on
    tests: TestCounts | None = None
    artifacts: list[str] = field(default_factory=list)
    attempts: list[StepResult] = field(default_factory=list)  # if retried: each, in order
    # seconds spent: "services" (waiting for them), "pull", "run", "collect"
    timings: dict[str, float] = field(default_factory=dict)
    build_steps: list[tuple[str, float]] = field(default_factory=list)  # a build's, timed
    services: dict[str, dict[str, float]] = field(default_factory=dict)  # its own: timings

    @property
    def failed(self) -> bool:
        """A failure that counts: it fails the pipeline and skips its dependants."""
        return self.status in FAILED and not self.ignored

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "exit_code": self.exit_code,
            "duration": round(self.duration, 3),
            "reason": self.reason,
            "ignored": self.ignored,
            "artifacts": self.artifacts,
        }
        if self.timings:
            doc["timings"] = _rounded(self.timings)
        if self.build_steps:
            doc["build_steps"] = [
                {"step": step, "duration": round(seconds, 3)} for step, seconds in self.build_steps
            ]
        if self.services:
            doc["services"] = {name: _rounded(t) for name, t in self.services.items()}
        if self.attempts:
            doc["attempts"] = [
                {
                    "status": a.status,
                    "exit_code": a.exit_code,
                    "duration": round(a.duration, 3),
                    "reason": a.reason,
                    **({"timings": _rounded(a.timings)} if a.timings else {}),
                }
                for a in self.attempts
            ]
        if self.tests is not None:
            doc["tests"] = {
                "passed": self.tests.passed,
                "failed": self.tests.failed,
                "skipped": self.tests.skipped,
                "failing": list(self.tests.failing),
            }
        return doc


@dataclass
class RunResult:
    """How a run ended; ``error`` says what failed outside any step (a service)."""

    id: str
    pipeline: str  # the pipeline file
    status: str  # success | failure | cancelled (| running while it runs)
    started: str  # ISO 8601, UTC
    branch: str | None
    event: str
    commit: str | None = None
    duration: float = 0.0
    error: str = ""
    steps: list[StepResult] = field(default_factory=list)
    pid: int | None = None  # of the process running it, while it runs
    services: dict[str, dict[str, float]] = field(default_factory=dict)  # timings: pull, ready

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCESS

    @property
    def failing_step(self) -> str | None:
        """The first step whose failure counts, if any."""
        return next((step.name for step in self.steps if step.failed), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "status": self.status,
            "started": self.started,
            "duration": round(self.duration, 3),
            "branch": self.branch,
            "commit": self.commit,
            "event": self.event,
            "error": self.error,
            "pid": self.pid,
            "failing_step": self.failing_step,
            "steps": [step.to_json() for step in self.steps],
            "services": {name: _rounded(t) for name, t in self.services.items()},
        }


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {name: round(seconds, 3) for name, seconds in timings.items()}


class Events:
    """Callbacks for following a run; the default does nothing.

    Called from several threads at once: an implementation that prints must serialise itself."""

    def line(self, source: str, text: str, *, note: bool = False) -> None:
        """A line of output of a step or service (``source``), secrets masked.

        ``note`` for what dockyard says about it (pulling, readiness, exit) rather than output."""

    def step_started(self, name: str) -> None:
        """A step's container (or build) is about to start."""

    def step_finished(self, result: StepResult) -> None:
        """A step ended, or was skipped."""

    def run_finished(self, result: RunResult) -> None:
        """The run ended, however it did (Ctrl-C included): its result, as saved."""
