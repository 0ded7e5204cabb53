"""JUnit XML reports: counts, failing names, nested suites, and hostile documents."""

from __future__ import annotations

import io

import pytest

from dockyard.ci import junit
from dockyard.ci.junit import Case, ReportError, TestCounts, parse_junit, read_reports

REPORT = b"""<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="6" failures="2">
  <testsuite name="outer" tests="6">
    <testcase classname="pkg.A" name="ok" time="0.1"/>
    <testcase classname="pkg.A" name="broken"><failure message="boom">trace</failure></testcase>
    <testcase classname="pkg.B" name="crash"><error type="E"/><system-out>x</system-out></testcase>
    <testcase name="later"><skipped/></testcase>
    <testsuite name="inner" tests="2">
      <testcase classname="pkg.C" name="nested-ok"><system-out>log</system-out></testcase>
      <testcase classname="pkg.C" name="nested-ok-2"/>
    </testsuite>
  </testsuite>
</testsuites>
"""


def parse(data: bytes) -> TestCounts:
    return parse_junit(io.BytesIO(data))


def test_counts_come_from_the_test_cases():
    counts = parse(REPORT)
    assert (counts.passed, counts.failed, counts.skipped) == (3, 2, 1)
    assert counts.failing == ("pkg.A.broken", "pkg.B.crash")
    assert counts.total == 6


def test_failed_cases_keep_their_message_and_output_and_come_first():
    cases = parse(REPORT).cases
    assert cases[:2] == (
        Case("pkg.A.broken", "failed", "boom", "trace"),
        Case("pkg.B.crash", "failed", "", "x"),
    )
    assert [(c.name, c.status, c.output) for c in cases[2:]] == [
        ("pkg.A.ok", "passed", ""),
        ("later", "skipped", ""),
        ("pkg.C.nested-ok", "passed", ""),  # a passing test's output is not kept
        ("pkg.C.nested-ok-2", "passed", ""),
    ]


def test_kept_cases_and_their_text_are_bounded():
    trace = "x" * (10 * junit.MAX_OUTPUT) + "the end"
    failures = "".join(
        f'<testcase name="f{i}"><failure message="{"m" * 5000}">{trace}</failure></testcase>'
        for i in range(junit.MAX_FAILED_CASES + 5)
    )
    passes = "".join(f'<testcase name="p{i}"/>' for i in range(3 * junit.MAX_CASES))
    counts = parse(f"<testsuite>{passes}{failures}</testsuite>".encode())
    assert counts.failed == junit.MAX_FAILED_CASES + 5 and counts.passed == 3 * junit.MAX_CASES
    assert len(counts.cases) == junit.MAX_CASES
    failed = [c for c in counts.cases if c.status == "failed"]
    assert len(failed) == junit.MAX_FAILED_CASES and counts.cases[0].name == "f0"
    assert len(failed[0].message) == junit.MAX_MESSAGE
    assert len(failed[0].output) == junit.MAX_OUTPUT and failed[0].output.endswith("the end")


def test_a_single_suite_and_an_empty_one():
    single = parse(
        b'<testsuite><testcase name="a"/><testcase name="b"><failure/></testcase></testsuite>'
    )
    assert (single.passed, single.failed, single.failing) == (1, 1, ("b",))
    assert parse(b"<testsuites/>") == TestCounts()


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b"<testsuite><testcase name='&lol2;'/></testsuite>",
        b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><testsuite/>',
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><testsuite>&e;</testsuite>',
    ],
)
def test_document_types_are_refused(data):
    with pytest.raises(ReportError, match="document type"):
        parse(data)


def test_malformed_xml():
    with pytest.raises(ReportError, match="not XML"):
        parse(b"<testsuite><testcase></testsuite>")


def test_reports_are_summed_over_globs(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "a.xml").write_bytes(REPORT)
    (tmp_path / "reports" / "b.xml").write_bytes(b'<testsuite><testcase name="x"/></testsuite>')
    (tmp_path / "bad.xml").write_bytes(b"not xml")
    counts, problems = read_reports(tmp_path, ("reports/*.xml", "bad.xml", "none/*.xml"))
    assert (counts.passed, counts.failed, counts.skipped) == (4, 2, 1)
    assert problems[0].startswith("report bad.xml: not XML")
    assert problems[1] == "no report matches none/*.xml"


def test_reports_outside_the_workspace_are_not_read(tmp_path):
    outside = tmp_path / "outside.xml"
    outside.write_bytes(REPORT)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "report.xml").symlink_to(outside)
    counts, problems = read_reports(workspace, ("report.xml",))
    assert counts == TestCounts()
    assert problems == ["report report.xml: outside the workspace"]
