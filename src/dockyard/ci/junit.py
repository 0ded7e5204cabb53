"""JUnit XML test reports: counts and the names of the tests that failed.

Reports are written by the pipeline's own commands, so they are untrusted input: the
parser is expat driven directly (no tree is built, memory stays flat) and a document
type declaration is refused outright, which rules out entity expansion bombs and
external entities. Report paths are globs matched through directory fds
(:mod:`.treeglob`: no symlinked directory is entered), and each report is opened
with ``openat2(RESOLVE_BENEATH)`` from the workspace: a report that is a symlink is
read only if it leads to a regular file inside the workspace, whatever a parallel
step swaps meanwhile; it is read up to its size when opened. Counts come from the
``testcase`` elements themselves, so nested ``testsuite`` totals are never added
twice; a case with a ``failure`` or ``error`` child failed, one with ``skipped`` was
skipped.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol
from xml.parsers import expat

from dockyard.ci.treeglob import DIR_FLAGS, TreeError, matches, no_check
from dockyard.runtime import inroot

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


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def parse_junit(stream: Readable) -> TestCounts:
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


def read_reports(
    workspace: Path, patterns: tuple[str, ...], *, check: Callable[[], None] = no_check
) -> tuple[TestCounts, list[str]]:
    """The sum of the reports matching ``patterns`` (globs relative to ``workspace``,
    see :mod:`.treeglob`), and a problem message for each report that could not be
    read. ``check`` is called for every entry looked at; it stops the reading by
    raising."""
    total, problems = TestCounts(), []
    root = os.open(workspace, DIR_FLAGS)
    try:
        for pattern in patterns:
            found = False
            try:
                for match in matches(root, pattern, check=check):
                    if stat.S_ISDIR(match.stat.st_mode):
                        continue
                    found = True
                    try:
                        with _open_report(root, match.path) as f:
                            total += parse_junit(_SizedReader(f, check))
                    except (OSError, ReportError) as e:
                        message = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                        problems.append(f"report {match.path}: {message}")
            except TreeError as e:
                problems.append(f"reports {pattern}: {e}")
            if not found:
                problems.append(f"no report matches {pattern}")
    finally:
        os.close(root)
    return total, problems


class _SizedReader:
    """A report read up to its size when it was opened (a step still appending to it
    is not followed), ``check`` called before each chunk."""

    def __init__(self, f: BinaryIO, check: Callable[[], None]):
        self._f = f
        self._left = os.fstat(f.fileno()).st_size
        self._check = check

    def read(self, size: int = -1) -> bytes:
        self._check()
        data = self._f.read(self._left if size < 0 else min(size, self._left))
        self._left -= len(data)
        return data


def _open_report(root: int, path: str) -> BinaryIO:
    """The regular file ``path`` under the directory ``root``, symlinks followed only
    while they stay beneath it."""
    try:
        fd = inroot.open_regular(root, path, beneath=True)
    except OSError as e:
        if e.errno == errno.EXDEV:
            raise ReportError("outside the workspace") from None
        if e.errno == errno.EAGAIN:
            raise ReportError("the workspace kept changing while it was opened") from None
        raise
    f = os.fdopen(fd, "rb")
    if os.fstat(fd).st_size > MAX_REPORT_SIZE:
        f.close()
        raise ReportError("too large")
    return f
