"""The run page from what an agent reports: the steps drawn as the graph their
``depends_on`` forms (status icon, word and duration in each box, a link to the step's
log), and the JUnit report with the failed tests first, with message and output."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from dockyard.service.models import JUnitCase, Run, Step
from dockyard.service.reports import REPORTS, store_reports
from dockyard.service.web import graph
from tests.service_api import Api, service_api

PLAN = [
    {"name": "compile", "depends_on": []},
    {"name": "lint", "depends_on": []},
    {"name": "test", "depends_on": ["compile"]},
    {"name": "package", "depends_on": ["test", "lint", "compile"]},
    {"name": "notify", "depends_on": ["compile", "lint", "test", "package"]},
]
CASES = [
    {"name": "t.test_fine", "status": "passed"},
    {"name": "t.test_later", "status": "skipped"},
    {
        "name": "t.test_broken",
        "status": "failed",
        "message": "expected 2, got 3",
        "output": "Traceback\n  assert 2 == 3\n<script>x</script>",
    },
]


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    with service_api(tmp_path) as instance:
        yield instance


def report(api: Api, reports: list[dict], attempt: int = 1) -> None:
    """Run 1 held by an agent, and ``reports`` stored as if it sent them."""
    from dockyard.service.models import Agent

    with api.client.app.state.service.db.transaction() as session:
        run = session.scalar(select(Run).where(Run.number == 1))
        agent = session.scalar(select(Agent).where(Agent.name == "a1"))
        if agent is None:
            agent = Agent(name="a1")
            session.add(agent)
            session.flush()
        run.status, run.agent_id, run.attempt, run.acked_seq = "running", agent.id, attempt, 0
        numbered = [{"seq": i, **r} for i, r in enumerate(reports, 1)]
        store_reports(session, run.id, agent.id, attempt, REPORTS.validate_python(numbered))


def test_the_plan_draws_every_step_and_edges_without_the_transitive_ones(api):
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    report(
        api,
        [
            {"kind": "plan", "steps": PLAN},
            {"kind": "step", "name": "compile", "status": "success", "duration": 3.25},
            {"kind": "step", "name": "lint", "status": "failure", "exit_code": 2, "duration": 1},
            {"kind": "step", "name": "test", "status": "running"},
        ],
    )
    api.client.post("/login", data={"token": api.admin})
    page = api.client.get("/repos/project/runs/1").text
    labels = re.findall(r'<a class="node[^"]*" href="[^"]+"\s+aria-label="([^"]+)"', page)
    assert labels == [
        "compile: success, 3.2 s",
        "lint: failure, 1.0 s",
        "test: running, after compile",
        "package: pending, after test, lint, compile",
        "notify: pending, after compile, lint, test, package",
    ]
    assert "✖ failure · 1.0 s" in page and "… pending" in page  # icon and word, not colour
    assert page.count('class="edge"') == 4  # compile→test→package→notify, lint→package
    assert "/log?step=package" in page


def test_layout_columns_follow_the_longest_chain():
    boxes = {b.step["name"]: b for b in graph.layout(PLAN).boxes}
    columns = {
        name: (b.x - graph.MARGIN) // (graph.WIDTH + graph.COLUMN_GAP) for name, b in boxes.items()
    }
    assert columns == {"compile": 0, "lint": 0, "test": 1, "package": 2, "notify": 3}
    assert boxes["lint"].y > boxes["compile"].y
    chain = [{"name": f"s{i}", "depends_on": [f"s{i - 1}"] if i else []} for i in range(1000)]
    assert len(graph.layout(chain).edges) == 999  # no recursion limit on long chains
    cycle = [{"name": "a", "depends_on": ["b"]}, {"name": "b", "depends_on": ["a"]}]
    assert len(graph.layout(cycle).boxes) == 2  # drawn, not followed forever


def test_a_new_attempt_makes_the_planned_steps_pending_again(api):
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    report(
        api,
        [{"kind": "plan", "steps": PLAN}, {"kind": "step", "name": "compile", "status": "failure"}],
    )
    report(api, [{"kind": "plan", "steps": PLAN}], attempt=2)
    with api.client.app.state.service.db.transaction() as session:
        statuses = dict(session.execute(select(Step.name, Step.status)).all())
    assert set(statuses.values()) == {"pending"}


def test_failed_tests_come_first_with_their_message_and_output(api):
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    counts = {"passed": 1, "failed": 1, "skipped": 1, "failing": ["t.test_broken"]}
    report(
        api,
        [
            {"kind": "tests", "step": "test", "cases": CASES},
            {"kind": "step", "name": "test", "status": "failure", "tests": counts},
            {"kind": "tests", "step": "test", "cases": CASES},  # a resend replaces, never doubles
        ],
    )
    with api.client.app.state.service.db.transaction() as session:
        assert len(session.scalars(select(JUnitCase)).all()) == 3
    api.client.post("/login", data={"token": api.admin})
    for path in ("/repos/project/runs/1", "/repos/project/runs/1/log?step=test"):
        page = api.client.get(path).text
        failed, rest = page.index("t.test_broken"), page.index("t.test_fine")
        assert failed < page.index("expected 2, got 3") < rest, path
        assert "Traceback\n  assert 2 == 3\n&lt;script&gt;x&lt;/script&gt;" in page, path
        assert page.index("t.test_later") < rest  # skipped before passed
    assert "t.test_broken" not in api.client.get("/repos/project/runs/1/log?step=other").text
