"""An agent's reports are sent in batches the server takes: a few test reports with
failure output each, or many small log reports, never past its body cap together."""

from __future__ import annotations

import json

from dockyard.service import reporter
from dockyard.service.api.common import REPORTS_MAX


def test_batches_stay_under_the_servers_body_cap():
    big = {"kind": "tests", "step": "s", "cases": [{"output": "x" * 4096}] * 100}  # ~400 KiB
    batch = reporter._batch([{"seq": i, **big} for i in range(1, 40)])
    assert 1 < len(batch) < 39
    assert len(json.dumps(batch)) <= reporter.BATCH_BYTES + len(json.dumps(big)) < REPORTS_MAX
    small = [{"seq": i, "kind": "log", "lines": [["s", "x", False]]} for i in range(1, 80)]
    assert len(reporter._batch(small)) == reporter.BATCH_REPORTS
    huge = {"seq": 1, "kind": "log", "lines": [["s", "x" * (2 << 20), False]]}
    assert reporter._batch([huge, *small]) == [huge]  # alone, as before
