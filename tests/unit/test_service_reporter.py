"""An agent's reports are sent in batches the server takes: a few test reports with
failure output each, or many small log reports, never past its body cap together."""

from __future__ import annotations

import json

from dockyard.service import reporter
from dockyard.service.api.common import REPORTS_MAX
from tests.service_api import service_api


def test_batches_stay_under_the_servers_body_cap():
    big = {"kind": "tests", "step": "s", "cases": [{"output": "x" * 4096}] * 100}  # ~400 KiB
    batch = reporter._batch([{"seq": i, **big} for i in range(1, 40)])
    assert 1 < len(batch) < 39
    assert len(json.dumps(batch)) <= reporter.BATCH_BYTES + len(json.dumps(big)) < REPORTS_MAX
    small = [{"seq": i, "kind": "log", "lines": [["s", "x", False]]} for i in range(1, 80)]
    assert len(reporter._batch(small)) == reporter.BATCH_REPORTS
    huge = {"seq": 1, "kind": "log", "lines": [["s", "x" * (2 << 20), False]]}
    assert reporter._batch([huge, *small]) == [huge]  # alone, as before


def test_long_log_lines_are_split_into_reports_the_server_takes(tmp_path):
    with service_api(tmp_path) as api:
        token = api.token("agent")
        me = {"name": "a1", "labels": {"os": "linux"}, "instance": "i"}
        api.call("POST", "/repos/project/runs", api.admin, 201, json={})
        job = api.call("POST", "/agent/poll", token, 200, json={**me, "wait": 0})["job"]
        api.client.headers["Authorization"] = f"Bearer {token}"
        sent = reporter.Reporter(api.client, me, job["id"], job["attempt"])
        lines = [f"{n:03} " + ("é" if n % 50 == 0 else "x") * reporter.MAX_LINE for n in range(520)]
        for text in lines:  # 500 of them together: 8 MiB, twice the server's cap
            sent.line("build", text)  # cut to MAX_LINE; "é" is 6 bytes escaped
        assert sent.finish("success", timeout=60)
        chunks = api.call("GET", "/repos/project/runs/1/logs", api.admin, 200)["chunks"]
        texts = [text for chunk in chunks for _, text, _ in chunk["lines"]]
        assert texts == [text[: reporter.MAX_LINE] for text in lines]
        assert api.call("GET", "/repos/project/runs/1", api.admin, 200)["status"] == "success"
