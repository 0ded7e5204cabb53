"""Test modules share helpers through ``tests/support`` and fixtures, never by importing
one another: a helper kept in a test module is run again wherever it is imported from."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
IMPORT_OF_A_TEST_MODULE = re.compile(r"^\s*(from|import)\s+tests\.\w+\.test_\w+", re.MULTILINE)


def test_no_test_module_imports_another():
    offenders = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if IMPORT_OF_A_TEST_MODULE.search(path.read_text())
    ]
    assert offenders == []
