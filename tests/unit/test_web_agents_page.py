"""The agents page: the queued runs no agent takes, each with why it waits, read in a
fixed number of queries however many runs wait."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event

from tests.service_api import Api, service_api


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    with service_api(tmp_path) as instance:
        instance.client.post("/login", data={"token": instance.admin})
        yield instance


def page_queries(api: Api) -> tuple[int, str]:
    """How many SQL statements the agents page runs, and its HTML."""
    seen: list[str] = []
    engine = api.client.app.state.service.db.engine
    listener = lambda *args: seen.append(args[2])  # noqa: E731 (statement)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        response = api.client.get("/agents")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert response.status_code == 200, response.text
    return len(seen), response.text


def test_the_queue_on_the_agents_page_is_read_in_a_fixed_number_of_queries(api):
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    few, html = page_queries(api)
    assert "no agent is connected" in html
    for _ in range(20):
        api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    many, html = page_queries(api)
    assert html.count("no agent is connected") == 21
    assert many == few
