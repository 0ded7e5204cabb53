"""The log page's lines: the tail of a long log first, earlier lines on demand, each
with its number in the whole log; the live stream resumes after the newest chunk."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import insert, select

from dockyard.service.models import LogChunk, Run
from dockyard.service.web import logtail
from tests.service_api import Api, service_api

CHUNKS = 1000  # of 100 lines: a log of 100,000 lines
PER_CHUNK = 100


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request, tmp_path) -> Iterator[Api]:
    """A run with a log of 100,000 lines, on SQLite and on PostgreSQL."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_database")
    with service_api(tmp_path, database=url) as instance:
        instance.call("POST", "/repos/project/runs", instance.admin, 201, json={})
        with instance.client.app.state.service.db.transaction() as session:
            run_id = session.scalar(select(Run.id).where(Run.number == 1))
            session.execute(
                insert(LogChunk),
                [
                    {
                        "run_id": run_id,
                        "attempt": 1,
                        "lines": [
                            ["build" if n % 2 else "test", f"line {c * PER_CHUNK + n + 1}", False]
                            for n in range(PER_CHUNK)
                        ],
                    }
                    for c in range(CHUNKS)
                ],
            )
        instance.client.post("/login", data={"token": instance.admin})
        yield instance


def numbered(doc: dict) -> list[str]:
    return [text for _, lines in doc["chunks"] for _, text, _ in lines]


def test_a_long_log_opens_with_its_tail_and_loads_earlier_lines(api):
    url = "/repos/project/runs/1/log/lines"
    started = time.perf_counter()
    tail = api.client.get(url).json()
    took = time.perf_counter() - started
    assert numbered(tail)[-1] == "line 100000"
    assert len(numbered(tail)) == logtail.TAIL  # whole chunks: 5 of 100 lines
    assert tail["start"] == 100_000 - logtail.TAIL
    assert tail["last"] == tail["chunks"][-1][0]
    earlier = api.client.get(url, params={"before": tail["chunks"][0][0], "lines": 150}).json()
    assert numbered(earlier)[0] == "line 99301" and numbered(earlier)[-1] == "line 99500"
    assert earlier["start"] == 99_300
    assert took < 2.0, took  # a generous bound: the whole log is never sent


def test_one_steps_lines_are_numbered_within_that_step(api):
    tail = api.client.get("/repos/project/runs/1/log/lines", params={"step": "build"}).json()
    assert numbered(tail)[-1] == "line 100000"
    assert all(int(t.split()[1]) % 2 == 0 for t in numbered(tail))
    assert tail["start"] + len(numbered(tail)) == 50_000


def test_counting_in_the_database_and_by_reading_agree(api):
    svc = api.client.app.state.service
    with svc.db.transaction() as session:
        run_id = session.scalar(select(Run.id))
        bound = session.scalar(select(LogChunk.id).order_by(LogChunk.id).offset(700).limit(1))
        chunks = session.scalars(
            select(LogChunk.lines).where(LogChunk.run_id == run_id, LogChunk.id < bound - 1)
        ).all()
        for step in ("build", "test", "other", ""):
            counted = logtail.lines_before(session, run_id, step, bound, 1)["start"]
            read = sum(1 for lines in chunks for line in lines if line[0] == step or not step)
            expected = {"other": 0, "": 699 * PER_CHUNK}.get(step, 699 * PER_CHUNK // 2)
            assert counted == read == expected, step


def test_bad_arguments_and_no_session_are_refused(api):
    url = "/repos/project/runs/1/log/lines"
    assert api.client.get(url, params={"before": "x"}).status_code == 400
    assert api.client.get("/repos/project/runs/9/log/lines").status_code == 404
    api.client.cookies.clear()
    assert api.client.get(url).status_code == 401


def test_the_event_stream_resumes_after_the_tail(api):
    tail = api.client.get("/repos/project/runs/1/log/lines").json()
    api.call("POST", "/repos/project/runs/1/cancel", api.admin, 202)  # one more chunk, ended
    with api.client.stream(
        "GET",
        f"/api/v1/repos/project/runs/1/logs?after={tail['last']}",
        headers={"Accept": "text/event-stream"},
    ) as stream:
        body = "".join(stream.iter_text())
    assert "cancelled while queued" in body and "line 100000" not in body
    assert f"id: {tail['last'] + 1}" in body and "event: end" in body
    # A reconnect sends Last-Event-ID, which wins over the page's ?after=.
    with api.client.stream(
        "GET",
        "/api/v1/repos/project/runs/1/logs?after=1",
        headers={"Accept": "text/event-stream", "Last-Event-ID": str(tail["last"] + 1)},
    ) as stream:
        body = "".join(stream.iter_text())
    assert "event: log" not in body and "event: end" in body


def test_lines_start_in_the_colours_the_lines_before_them_left(api):
    esc = "\x1b"
    later = [
        [
            ["build", f"{esc}[1;31mred and bold", False],
            ["test", f"{esc}[32mgreen{esc}[0m {esc}[44m", False],
        ],
        [["test", f"{esc}]8;;http://x{esc}\\link{esc}]8;;{esc}\\ {esc}[38;5;33m", False]],
        [["build", f"{esc}[35mgone\rdrawn", False], ["deploy", f"{esc}[33m", False]],
        [["deploy", f"{esc}[m", False]],
        [["build", "plain", False], ["test", "plain", False], ["deploy", "plain", False]],
    ]
    with api.client.app.state.service.db.transaction() as session:
        run_id = session.scalar(select(Run.id))
        session.add_all(LogChunk(run_id=run_id, attempt=1, lines=lines) for lines in later)
    url = "/repos/project/runs/1/log/lines"
    tail = api.client.get(url, params={"lines": 3}).json()
    assert numbered(tail) == ["plain"] * 3
    assert tail["colours"] == {  # 38;5;33 is a 256-colour code, not yellow; deploy reset
        "build": {"fg": 31, "bg": 0, "bold": True},
        "test": {"fg": 0, "bg": 44, "bold": False},
    }
    one = api.client.get(url, params={"lines": 1, "step": "test"}).json()
    assert one["colours"] == {"test": {"fg": 0, "bg": 44, "bold": False}}
    earlier = api.client.get(url, params={"lines": 1, "before": tail["chunks"][0][0]}).json()
    assert earlier["colours"] == {"deploy": {"fg": 33, "bg": 0, "bold": False}}
