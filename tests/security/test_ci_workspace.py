"""Attacks on what a pipeline run reads back from its workspace after steps ran, and
on the store dirs it mounts into steps.

Steps write the workspace and may run in parallel with the collection of another
step's artifacts and reports, so every path in it can turn into a symlink to a host
directory at any moment. Each race here runs for real: a thread swaps a workspace
directory with a symlink to a sacrificial "host" directory thousands of times while
the collection runs, and no host file may ever be read.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from dockyard.ci import steps
from dockyard.ci.caches import CACHE_DIR, cache_dir, cache_name
from dockyard.ci.cancel import Cancellation, Cancelled
from dockyard.ci.junit import read_reports
from dockyard.ci.output import OutputLog
from dockyard.ci.pipeline import parse_pipeline
from dockyard.ci.results import Events, StepResult
from dockyard.ci.runs import RunDir
from dockyard.ci.workspace import collect_artifacts
from dockyard.errors import DockyardError

VICTIM = b"host secret"
ROUNDS = 30
MAX_ROUNDS = 1000  # more rounds while the race has not yet let a real copy through
MIN_FLIPS = 2000
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a: Path, b: Path) -> None:
    """Swap two directory entries atomically (renameat2 RENAME_EXCHANGE)."""
    if _libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), _RENAME_EXCHANGE) < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a))


@contextlib.contextmanager
def flipping(real: Path, host: Path) -> Iterator[list[int]]:
    """While the block runs, swap the directory ``real`` and a symlink to ``host``
    over and over; yields a list holding the number of swaps done."""
    link = real.with_name(real.name + ".swap")
    link.symlink_to(host)
    flips = [0]
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set() or flips[0] < MIN_FLIPS:
            exchange(real, link)
            flips[0] += 1

    thread = threading.Thread(target=flip)
    thread.start()
    try:
        yield flips
    finally:
        stop.set()
        thread.join()


def host_dir(tmp_path: Path, files: dict[str, bytes]) -> Path:
    host = tmp_path / "host"
    host.mkdir()
    for name, data in files.items():
        (host / name).write_bytes(data)
    return host


def regular_files(tree: Path) -> Iterator[Path]:
    for directory, _, names in os.walk(tree):  # never follows links
        for name in names:
            path = Path(directory, name)
            if not path.is_symlink():
                yield path


@pytest.mark.parametrize("pattern", ["dist/**", "dist/d/*", "dist/*/*", "**/f*"])
def test_a_dir_flipped_to_a_host_symlink_never_copies_host_files(tmp_path, pattern):
    names = [f"f{i:03}" for i in range(40)]
    host = host_dir(tmp_path, dict.fromkeys(names, VICTIM))
    real = tmp_path / "ws" / "dist" / "d"
    real.mkdir(parents=True)
    for name in names:
        (real / name).write_bytes(b"workspace file")
    copied_files = 0
    with flipping(real, host) as flips:
        for round_ in range(MAX_ROUNDS):
            if round_ >= ROUNDS and copied_files:
                break
            target = tmp_path / f"artifacts{round_}"
            collect_artifacts(tmp_path / "ws", [pattern], target)
            for path in regular_files(target):
                assert path.read_bytes() != VICTIM, f"host file copied as {path}"
                copied_files += 1
    assert flips[0] >= MIN_FLIPS
    assert copied_files  # the workspace's own files were copied meanwhile


def test_a_report_dir_flipped_to_a_host_symlink_never_reads_host_reports(tmp_path):
    host_report = b'<testsuite><testcase name="host-secret"><failure/></testcase></testsuite>'
    host = host_dir(tmp_path, {f"r{i}.xml": host_report for i in range(20)})
    real = tmp_path / "ws" / "reports"
    real.mkdir(parents=True)
    for i in range(20):
        (real / f"r{i}.xml").write_bytes(b'<testsuite><testcase name="ok"/></testsuite>')
    passed = 0
    with flipping(real, host) as flips:
        for round_ in range(MAX_ROUNDS):
            if round_ >= ROUNDS and passed:
                break
            for pattern in ("reports/*.xml", "**/*.xml", "reports/r1.xml"):
                counts, _ = read_reports(tmp_path / "ws", (pattern,))
                assert counts.failed == 0 and "host-secret" not in counts.failing
                passed += counts.passed
    assert flips[0] >= MIN_FLIPS
    assert passed  # the workspace's own reports were read meanwhile


def loops(tmp_path: Path) -> Path:
    """A workspace whose ``out`` holds three links to its parent (``ln -s .. out/a``)."""
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    (ws / "out" / "file").write_text("f")
    for name in "abc":
        (ws / "out" / name).symlink_to("..")
    return ws


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [("out/**", ["out"]), ("**", ["out"]), ("**/*/**/file", ["out/file"]), ("out/*/*/*", [])],
)
def test_artifact_globs_never_enter_symlink_loops(tmp_path, pattern, expected):
    ws = loops(tmp_path)
    looked_at = [0]

    def check() -> None:
        looked_at[0] += 1

    target = tmp_path / "artifacts"
    copied, problems = collect_artifacts(ws, [pattern], target, check=check)
    assert (copied, problems) == (expected, [])
    assert looked_at[0] < 20  # the tree has 6 entries; a loop would never end
    if copied == ["out"]:
        assert os.readlink(target / "out" / "a") == ".."  # copied as a link


def test_report_globs_never_enter_symlink_loops(tmp_path):
    ws = loops(tmp_path)
    looked_at = [0]

    def check() -> None:
        looked_at[0] += 1

    counts, problems = read_reports(ws, ("**/*.xml",), check=check)
    assert counts.total == 0
    assert problems == ["no report matches **/*.xml"]
    assert looked_at[0] < 20


def test_a_cancelled_collection_stops_and_leaves_no_half_copied_file(tmp_path):
    ws = tmp_path / "ws"
    (ws / "dist").mkdir(parents=True)
    with open(ws / "dist" / "big", "wb") as f:
        f.truncate(64 << 20)
    cancel = Cancellation()
    chunks = [0]

    def check() -> None:
        chunks[0] += 1
        if chunks[0] == 5:  # in the middle of the big file
            cancel.cancel()
        cancel.check()

    target = tmp_path / "artifacts"
    with pytest.raises(Cancelled):
        collect_artifacts(ws, ["dist/**"], target, check=check)
    assert not (target / "dist" / "big").exists()


def test_a_symlink_in_place_of_a_cache_dir_is_refused_not_mounted(tmp_path):
    host = host_dir(tmp_path, {"private": VICTIM})
    before = os.stat(host).st_mtime_ns
    name = cache_name("pipeline", "/root/.cache")
    (tmp_path / "store" / CACHE_DIR).mkdir(parents=True)
    (tmp_path / "store" / CACHE_DIR / name).symlink_to(host)
    with pytest.raises(DockyardError, match="is not a directory"):
        cache_dir(tmp_path / "store", "pipeline", "/root/.cache")
    assert os.stat(host).st_mtime_ns == before


@pytest.mark.parametrize("stop", ["cancel", "timeout"])
def test_collection_after_a_step_honours_cancel_and_the_step_timeout(tmp_path, monkeypatch, stop):
    run = RunDir.create(tmp_path / "store")
    loops(tmp_path).rename(run.workspace)  # links to their parent: old globs never ended
    (run.workspace / "out" / "r.xml").write_text("<testsuite/>")
    pipeline = parse_pipeline(
        'steps: [{name: s, image: busybox, artifacts: ["out/**"], reports: {junit: "**"}}]',
        Path(".dockyard.yml"),
    )
    ctx = SimpleNamespace(run=run, cancel=Cancellation())
    log = OutputLog("s", run.step_log("s"), [], Events())
    monkeypatch.setattr(steps, "COLLECT_GRACE", 0.0)
    if stop == "cancel":
        ctx.cancel.cancel()
    deadline = None if stop == "cancel" else time.monotonic() - 1
    result = StepResult("s", "success")
    with pytest.raises(Cancelled if stop == "cancel" else steps.StepTimeout):
        steps._collect(ctx, pipeline.steps[0], result, log, deadline)
    assert result.artifacts == []
    if stop == "timeout":  # the same without a timeout: everything is collected
        steps._collect(ctx, pipeline.steps[0], result, log, None)
        assert result.artifacts == ["out"] and result.tests.passed == 0


# -- caches keyed by workspace files --------------------------------------------------


def test_a_cache_key_file_linked_out_of_the_workspace_is_never_read(tmp_path):
    """A step replaces requirements.txt with a symlink to a host file (or a FIFO): the
    key is that of a missing file, whatever the host file holds, and nothing blocks."""
    from dockyard.ci.caches import files_key

    workspace, host = tmp_path / "workspace", tmp_path / "host"
    workspace.mkdir()
    host.mkdir()
    victim = host / "secret.txt"
    victim.write_text("one")
    missing = files_key(workspace, ["requirements.txt"])
    (workspace / "requirements.txt").symlink_to(victim)
    assert files_key(workspace, ["requirements.txt"]) == missing
    no_sub = files_key(workspace, ["sub/secret.txt"])
    (workspace / "sub").symlink_to(host)
    assert files_key(workspace, ["sub/secret.txt"]) == no_sub
    victim.write_text("two")
    assert files_key(workspace, ["requirements.txt"]) == missing
    (workspace / "requirements.txt").unlink()
    os.mkfifo(workspace / "requirements.txt")
    assert files_key(workspace, ["requirements.txt"]) == missing


def test_a_check_policy_dir_flipped_to_a_host_symlink_never_reads_the_host_policy(tmp_path):
    """A check step's policy file is opened beneath the workspace: while a step swaps
    its directory with a symlink to a host directory, the host's file is never read."""
    host = host_dir(tmp_path, {"gate.yml": b"max_layers: {max: 1}\n"})
    real = tmp_path / "ws" / "ci"
    real.mkdir(parents=True)
    (real / "gate.yml").write_bytes(b"secrets: {}\n")
    read = 0
    with flipping(real, host) as flips:
        for round_ in range(MAX_ROUNDS * 10):
            if round_ >= ROUNDS * 10 and read:
                break
            try:
                policy = steps._read_policy(tmp_path / "ws", "ci/gate.yml")
            except DockyardError as e:
                assert "max_layers" not in str(e)
                continue
            assert policy.enabled() == ["secrets"], "the host's policy was read"
            read += 1
    assert flips[0] >= MIN_FLIPS
    assert read  # the workspace's own policy was read meanwhile
