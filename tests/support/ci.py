"""Pipelines run end to end: ``dockyard ci run`` and its output, ``dockyard`` in the
background, and the check that a run leaves nothing behind (``clean_host``, an autouse
fixture: a module imports it to have it run after each of its tests)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from dockyard.mountinfo import mount_points_under
from dockyard.runtime.container import BUNDLES_DIR
from tests.conftest import need
from tests.support.containers import runc_containers


def processes_using(path: Path) -> list[int]:
    """Live pids whose root, working directory or command line lies under ``path``."""
    prefix = str(path)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        proc = Path("/proc", entry)
        try:
            if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            places = [os.readlink(proc / "root"), os.readlink(proc / "cwd")]
            cmdline = proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(p.startswith(prefix) for p in places) or prefix in cmdline:
            found.append(int(entry))
    return found


@pytest.fixture(autouse=True)
def clean_host(store_root, tmp_path) -> Iterator[None]:
    """After each test: no mounts, runc containers, bundles, namespaces, workspaces or
    processes left behind."""
    need("runc")
    yield
    assert mount_points_under(tmp_path) == []
    if (store_root / "runc").exists():
        assert runc_containers(store_root) == []
    assert list((store_root / BUNDLES_DIR).glob("*")) == []
    runs = store_root / "ci" / "runs"
    assert list(runs.glob("*/netns")) == []
    assert list(runs.glob("*/workspace")) == []
    assert list((store_root / "snapshots").glob(".scratch-*")) == []
    assert processes_using(tmp_path) == []


def ci_run(dockyard, directory: Path, *args: str, expect: int = 0):
    """Run the pipeline of ``directory``; return (stdout, result JSON)."""
    report = directory.parent / "result.json"
    result = dockyard(
        "ci", "run", "--json", str(report), *args, str(directory), check=False, timeout=300
    )
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == expect, f"exit {result.returncode}\n{out}\n{err}"
    return out, json.loads(report.read_text())


def output(out: str, source: str) -> list[str]:
    """The live lines of ``source`` in the output of ``ci run``."""
    found = []
    for line in out.splitlines():
        name, sep, text = line.partition(" | ")
        if sep and name.strip() == source:
            found.append(text)
    return found


def steps(doc) -> dict[str, dict]:
    return {step["name"]: step for step in doc["steps"]}


def cli(store_root: Path, *args: str) -> subprocess.Popen[str]:
    """``dockyard ARGS`` started in the background, its stdout a pipe of text."""
    return subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.main", *args],
        env={**os.environ, "DOCKYARD_ROOT": str(store_root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines_of(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """``process``'s stdout, line by line as it comes (None at its end)."""
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, args=(process.stdout,), daemon=True).start()
    return lines


def rest_of(lines: queue.Queue[str | None], timeout: float = 60) -> list[str]:
    """The lines until the end."""
    seen: list[str] = []
    while (line := lines.get(timeout=timeout)) is not None:
        seen.append(line)
    return seen
