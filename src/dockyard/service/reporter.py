"""An agent's reports to the server about one run, shipped as the run goes.

The engine's :class:`~dockyard.ci.results.Events` arrive here from the step threads;
each becomes a numbered report (log lines gathered into reports per flush, each of
at most :data:`BATCH_LINES` lines and about :data:`LOG_BYTES` of JSON). A
shipping thread sends what is pending every :data:`FLUSH_INTERVAL` seconds, in order,
and drops a report only once the server has acknowledged its number: a failed request
is retried with the same numbers, which the server stores once (:mod:`.reports`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import httpx

from dockyard.ci.graph import StepGraph
from dockyard.ci.results import Events, RunResult, StepResult

log = logging.getLogger("dockyard.agent")
FLUSH_INTERVAL = 0.2  # seconds: a printed line reaches the server within about this
BATCH_LINES = 500  # lines per log report at most
LOG_BYTES = 1 << 20  # JSON per log report, past its first line
BATCH_REPORTS = 50  # reports per request
BATCH_BYTES = 1 << 20  # JSON per request, past its first report (the server takes 4 MiB)
MAX_LINE = 16 << 10
MAX_NAME = 255  # characters of a test's name sent
RETRY_MAX = 5.0  # seconds between retries at most


def _batch(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first reports of ``pending``: up to :data:`BATCH_REPORTS`, and no more than
    about :data:`BATCH_BYTES` of JSON unless one report alone is larger."""
    size = 0
    for count, report in enumerate(pending[:BATCH_REPORTS]):
        size += len(json.dumps(report))
        if count and size > BATCH_BYTES:
            return pending[:count]
    return pending[:BATCH_REPORTS]


class Stale(Exception):
    """The server says the agent no longer holds the run."""


class Reporter(Events):
    def __init__(self, client: httpx.Client, agent: dict[str, Any], run_id: int, attempt: int):
        self._client = client
        self._agent = agent  # name, labels, capacity: who is reporting
        self._url = f"/api/v1/agent/runs/{run_id}/reports"
        self._attempt = attempt
        self._lock = threading.Lock()
        self._lines: list[list[Any]] = []
        self._pending: list[dict[str, Any]] = []
        self._seq = 0
        self._closed = threading.Event()
        self.stale = False
        self._thread = threading.Thread(target=self._ship, name=f"report-{run_id}", daemon=True)
        self._thread.start()

    # --- Events ----------------------------------------------------------------------

    def line(self, source: str, text: str, *, note: bool = False) -> None:
        with self._lock:
            self._lines.append([source[:255], text[:MAX_LINE], note])

    def step_started(self, name: str) -> None:
        self.add({"kind": "step", "name": name, "status": "running"})

    def plan(self, graph: StepGraph) -> None:
        """The steps the run will have, and what each waits for (the page's graph)."""
        steps = [
            {"name": n, "depends_on": [d for d in graph.order if d in graph.awaits[n]]}
            for n in graph.order
        ]
        self.add({"kind": "plan", "steps": steps})

    def step_finished(self, result: StepResult) -> None:
        tests = None
        if result.tests is not None and result.tests.cases:
            cases = [
                {
                    "name": c.name[:MAX_NAME],
                    "status": c.status,
                    "message": c.message,
                    "output": c.output,
                }
                for c in result.tests.cases
            ]
            self.add({"kind": "tests", "step": result.name, "cases": cases})
        if result.tests is not None:
            tests = {
                "passed": result.tests.passed,
                "failed": result.tests.failed,
                "skipped": result.tests.skipped,
                "failing": [str(n)[:255] for n in result.tests.failing][:100],
            }
        self.add(
            {
                "kind": "step",
                "name": result.name,
                "status": result.status,
                "exit_code": result.exit_code,
                "duration": result.duration,
                "reason": result.reason[:MAX_LINE],
                "tests": tests,
            }
        )

    def run_finished(self, result: RunResult) -> None:
        pass  # the agent sends the end itself (:meth:`finish`), with its own verdict

    # --- shipping --------------------------------------------------------------------

    def add(self, report: dict[str, Any]) -> None:
        with self._lock:
            self._take_lines()
            self._seq += 1
            self._pending.append({"seq": self._seq, **report})

    def _take_lines(self) -> None:
        """The lines printed so far as log reports of up to :data:`BATCH_LINES` lines
        and about :data:`LOG_BYTES` of JSON (500 long lines would pass the server's
        body cap): a report alone always fits in a request."""
        start, size = 0, 0
        for end, line in enumerate(self._lines):
            size += len(json.dumps(line))  # escaped: at least the UTF-8 bytes sent
            if end > start and (end - start == BATCH_LINES or size > LOG_BYTES):
                self._log_report(self._lines[start:end])
                start, size = end, len(json.dumps(line))
        if self._lines:
            self._log_report(self._lines[start:])
        self._lines = []

    def _log_report(self, lines: list[list[Any]]) -> None:
        self._seq += 1
        self._pending.append({"seq": self._seq, "kind": "log", "lines": lines})

    def finish(self, status: str, error: str = "", timeout: float = 600.0) -> bool:
        """Send the run's end after everything before it; True once all is stored."""
        self.add({"kind": "finish", "status": status, "error": error[:MAX_LINE]})
        return self.close(timeout)

    def close(self, timeout: float) -> bool:
        """Stop shipping once what is pending is stored (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stale:
            with self._lock:
                if not self._pending and not self._lines:
                    break
            time.sleep(FLUSH_INTERVAL / 2)
        self._closed.set()
        self._thread.join()
        with self._lock:
            return not self._pending and not self._lines and not self.stale

    def _ship(self) -> None:
        delay = FLUSH_INTERVAL
        while not self.stale:
            closing = self._closed.wait(delay)
            with self._lock:
                self._take_lines()
                batch = _batch(self._pending)
            if closing and not batch:
                return
            if not batch:
                delay = FLUSH_INTERVAL
                continue
            try:
                acked = self._send(batch)
            except Stale:
                self.stale = True
                return
            except (httpx.HTTPError, OSError, ValueError) as e:
                log.warning("sending reports failed (%s); retrying", e)
                if closing:
                    return
                delay = min(delay * 2, RETRY_MAX)
                continue
            with self._lock:
                self._pending = [r for r in self._pending if r["seq"] > acked]
            delay = 0 if len(self._pending) > 0 else FLUSH_INTERVAL

    def _send(self, batch: list[dict[str, Any]]) -> int:
        response = self._client.post(
            self._url, json={**self._agent, "attempt": self._attempt, "reports": batch}
        )
        if response.status_code == 409:
            raise Stale(response.json().get("error", ""))
        response.raise_for_status()
        return int(response.json()["acked"])
