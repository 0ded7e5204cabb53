"""A process renaming files in a loop: what makes ``openat2``'s scoped lookups through
``..`` fail with ``EAGAIN`` (the kernel's rename sequence count moved under them)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_LOOP = """
import os, sys
os.chdir(sys.argv[1])
open("x", "w").close()
os.mkdir("d")
print(flush=True)
while True:
    os.rename("x", "d/x")
    os.rename("d/x", "x")
"""


@contextmanager
def renaming(directory: Path) -> Iterator[None]:
    """For the block, a child process moves a file in and out of a subdirectory of the
    (new, empty) ``directory`` as fast as it can."""
    directory.mkdir()
    child = subprocess.Popen([sys.executable, "-c", _LOOP, str(directory)], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        child.stdout.readline()  # renaming from now on
        yield
    finally:
        child.kill()
        child.wait()
