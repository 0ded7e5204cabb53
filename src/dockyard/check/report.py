"""Writing check results: lines for people, JSON for scripts, JUnit XML for CI.

In JUnit XML each rule is a test case of the image's suite, each finding a failure, warnings
as output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from xml.etree import ElementTree

from dockyard.check.run import CheckResult


def text(results: Sequence[CheckResult]) -> str:
    lines = []
    for result in results:
        for f in result.findings:
            lines.append(f"{result.image}: {f.severity}: {f.rule}: {f.where}: {f.message}")
        errors = sum(f.severity == "error" for f in result.findings)
        warnings = len(result.findings) - errors
        verdict = "FAIL" if result.failed else "PASS"
        lines.append(f"{result.image}: {verdict} ({errors} errors, {warnings} warnings)")
    return "\n".join(lines) + "\n"


def as_json(results: Sequence[CheckResult]) -> str:
    doc = [
        {
            "image": result.image,
            "digest": result.digest,
            "passed": not result.failed,
            "findings": [finding.to_json() for finding in result.findings],
        }
        for result in results
    ]
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def junit(results: Sequence[CheckResult], rules: Sequence[str]) -> str:
    """One test suite per image; one case per rule that ran."""
    suites = ElementTree.Element("testsuites", name="dockyard check")
    for result in results:
        suite = ElementTree.SubElement(suites, "testsuite", name=result.image)
        failures = 0
        for rule in rules:
            case = ElementTree.SubElement(suite, "testcase", classname=result.image, name=rule)
            found = [f for f in result.findings if f.rule == rule]
            errors = [f for f in found if f.severity == "error"]
            for f in errors:
                failure = ElementTree.SubElement(case, "failure", message=f"{f.where}: {f.message}")
                failure.text = json.dumps(f.to_json())
            if errors:
                failures += 1
            if warnings := [f for f in found if f.severity != "error"]:
                out = ElementTree.SubElement(case, "system-out")
                out.text = "\n".join(f"warning: {f.where}: {f.message}" for f in warnings)
        suite.set("tests", str(len(rules)))
        suite.set("failures", str(failures))
    ElementTree.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + ElementTree.tostring(suites, encoding="unicode")
        + "\n"
    )
