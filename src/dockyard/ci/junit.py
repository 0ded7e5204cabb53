"""JUnit XML test reports: counts and the names of the tests that failed.

Reports are written by the pipeline's own commands, so they are untrusted input: the
parser is expat driven directly (no tree is built, memory stays flat) and a document
type declaration is refused outright, which rules out entity expansion bombs and
external entities. Counts come from the ``testcase`` elements themselves, so nested
``testsuite`` totals are never added twice; a case with a ``failure`` or ``error``
child failed, one with ``skipped`` was skipped.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from xml.parsers import expat

MAX_REPORT_SIZE = 256 << 20
MAX_FAILING_NAMES = 200


class ReportError(ValueError):
    """A report is not JUnit XML we accept."""


@dataclass(frozen=True)
class TestCounts:
    """What a step's reports say."""

    __test__ = False  # not a pytest class

    passed: int = 0
    failed: int = 0  # failures and errors
    skipped: int = 0
    failing: tuple[str, ...] = field(default=())  # the first MAX_FAILING_NAMES

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped

    def __add__(self, other: TestCounts) -> TestCounts:
        return TestCounts(
            self.passed + other.passed,
            self.failed + other.failed,
            self.skipped + other.skipped,
            (self.failing + other.failing)[:MAX_FAILING_NAMES],
        )


def parse_junit(stream: BinaryIO) -> TestCounts:
    """Count the test cases of one JUnit XML document."""
    parser = expat.ParserCreate()
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failing: list[str] = []
    case: dict[str, str] | None = None  # the open testcase: its name and outcome
    depth = 0  # element depth inside the open testcase

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal case, depth
        if case is not None:
            depth += 1
            if depth == 1 and name in ("failure", "error"):
                case["outcome"] = "failed"
            elif depth == 1 and name == "skipped" and case["outcome"] != "failed":
                case["outcome"] = "skipped"
        elif name == "testcase":
            classname, test = attributes.get("classname", ""), attributes.get("name", "?")
            case = {"name": f"{classname}.{test}" if classname else test, "outcome": "passed"}
            depth = 0

    def end(name: str) -> None:
        nonlocal case, depth
        if case is None:
            return
        if depth:
            depth -= 1
            return
        counts[case["outcome"]] += 1
        if case["outcome"] == "failed" and len(failing) < MAX_FAILING_NAMES:
            failing.append(case["name"])
        case = None

    def refuse(*args: object) -> None:
        raise ReportError("document type declarations are not allowed")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    try:
        parser.ParseFile(stream)
    except expat.ExpatError as e:
        raise ReportError(f"not XML: {e}") from None
    return TestCounts(counts["passed"], counts["failed"], counts["skipped"], tuple(failing))


def read_reports(workspace: Path, patterns: tuple[str, ...]) -> tuple[TestCounts, list[str]]:
    """The sum of the reports matching ``patterns`` (globs relative to ``workspace``),
    and a problem message for each report that could not be read."""
    total, problems = TestCounts(), []
    root = workspace.resolve()
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, root_dir=root, recursive=True, include_hidden=True))
        if not matches:
            problems.append(f"no report matches {pattern}")
        for relative in matches:
            path = root / relative
            try:
                if not path.resolve().is_relative_to(root):
                    raise ReportError("outside the workspace")
                with open(path, "rb") as f:
                    if os.fstat(f.fileno()).st_size > MAX_REPORT_SIZE:
                        raise ReportError("too large")
                    total += parse_junit(f)
            except (OSError, ReportError) as e:
                message = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                problems.append(f"report {relative}: {message}")
    return total, problems
