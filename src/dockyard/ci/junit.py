"""JUnit XML test reports: counts, and the test cases.

Each failed case with its message and output (the failure's text, ``system-out`` and ``system-err``,
cut to :data:`MAX_OUTPUT`), then the names of the others (up to :data:`MAX_CASES` in all).

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
from typing import BinaryIO, NoReturn, Protocol
from xml.parsers import expat

from dockyard.ci.treeglob import DIR_FLAGS, TreeError, matches, no_check
from dockyard.runtime import inroot

MAX_REPORT_SIZE = 256 << 20
MAX_FAILING_NAMES = 200
MAX_FAILED_CASES = 100  # failed cases kept with their message and output
MAX_CASES = 1000  # cases kept in all (the counts count every one)
MAX_MESSAGE = 1024  # characters of a failure's message kept
MAX_OUTPUT = 4096  # characters of a failed case's output kept (its last ones)


class ReportError(ValueError):
    """A report is not JUnit XML we accept."""


@dataclass(frozen=True)
class Case:
    """One test case; ``message`` and ``output`` only of a failed one."""

    name: str
    status: str  # passed | failed | skipped
    message: str = ""
    output: str = ""


@dataclass(frozen=True)
class TestCounts:
    """What a step's reports say."""

    __test__ = False  # not a pytest class

    passed: int = 0
    failed: int = 0  # failures and errors
    skipped: int = 0
    failing: tuple[str, ...] = field(default=())  # the first MAX_FAILING_NAMES
    cases: tuple[Case, ...] = field(default=(), compare=False)  # see :func:`_kept`

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped

    def __add__(self, other: TestCounts) -> TestCounts:
        return TestCounts(
            self.passed + other.passed,
            self.failed + other.failed,
            self.skipped + other.skipped,
            (self.failing + other.failing)[:MAX_FAILING_NAMES],
            _kept(self.cases + other.cases),
        )


def _kept(cases: tuple[Case, ...]) -> tuple[Case, ...]:
    """The first :data:`MAX_FAILED_CASES` failed cases, then others up to :data:`MAX_CASES`."""
    failed = [c for c in cases if c.status == "failed"][:MAX_FAILED_CASES]
    others = [c for c in cases if c.status != "failed"][: MAX_CASES - len(failed)]
    return (*failed, *others)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def parse_junit(stream: Readable) -> TestCounts:
    """Count the test cases of one JUnit XML document, and keep them (bounded)."""
    parser = expat.ParserCreate()
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failing: list[str] = []
    cases: list[Case] = []
    case: dict[str, str] | None = None  # the open testcase: its name and outcome
    depth = 0  # element depth inside the open testcase
    text: list[str] | None = None  # the text of the open failure / system-out / -err
    text_size = 0
    output: list[str] = []  # the open testcase's failure text and output

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal case, depth, text, text_size
        if case is not None:
            depth += 1
            if depth == 1 and name in ("failure", "error"):
                case["outcome"] = "failed"
                case["message"] = case["message"] or attributes.get("message", "")[:MAX_MESSAGE]
            elif depth == 1 and name == "skipped" and case["outcome"] != "failed":
                case["outcome"] = "skipped"
            if depth == 1 and name in ("failure", "error", "system-out", "system-err"):
                text, text_size = [], 0
        elif name == "testcase":
            classname, test = attributes.get("classname", ""), attributes.get("name", "?")
            case = {
                "name": f"{classname}.{test}" if classname else test,
                "outcome": "passed",
                "message": "",
            }
            depth = 0
            output.clear()

    def characters(data: str) -> None:
        nonlocal text_size
        if text is not None:
            text.append(data)
            text_size += len(data)
            if text_size > 2 * MAX_OUTPUT:  # keep the end: where a trace says what broke
                joined = "".join(text)[-MAX_OUTPUT:]
                text[:] = [joined]
                text_size = len(joined)

    def end(name: str) -> None:
        nonlocal case, depth, text
        if case is None:
            return
        if depth:
            if depth == 1 and text is not None:
                output.append("".join(text).strip("\n"))
                text = None
            depth -= 1
            return
        outcome = case["outcome"]
        counts[outcome] += 1
        if outcome == "failed" and len(failing) < MAX_FAILING_NAMES:
            failing.append(case["name"])
        if outcome == "failed":
            joined = "\n".join(o for o in output if o)[-MAX_OUTPUT:]
            cases.append(Case(case["name"], outcome, case["message"], joined))
        else:
            cases.append(Case(case["name"], outcome))
        if len(cases) > 2 * MAX_CASES:
            cases[:] = _kept(tuple(cases))
        case = None

    def refuse(*args: object) -> NoReturn:
        raise ReportError("document type declarations are not allowed")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    try:
        parser.ParseFile(stream)
    except expat.ExpatError as e:
        raise ReportError(f"not XML: {e}") from None
    return TestCounts(
        counts["passed"], counts["failed"], counts["skipped"], tuple(failing), _kept(tuple(cases))
    )


def read_reports(
    workspace: Path, patterns: tuple[str, ...], *, check: Callable[[], None] = no_check
) -> tuple[TestCounts, list[str]]:
    """The sum of the reports matching ``patterns``, and a problem for each unreadable one.

    ``patterns`` are globs relative to ``workspace`` (see :mod:`.treeglob`). ``check`` is called
    for every entry looked at; it stops the reading by raising."""
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
