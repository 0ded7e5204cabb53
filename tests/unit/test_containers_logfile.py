"""A background container's log rotated at a size cap (docker's max-size/max-file) and
read across the rotation, with and without following."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from dockyard.containers.logfile import (
    LOCK_FILE,
    LOG_FILE,
    LogLimits,
    LogReader,
    LogWriter,
    append,
    follow,
)
from dockyard.files.locking import FileLock

LIMITS = LogLimits(max_size=100, max_files=3)


def lines(first: int, count: int) -> bytes:
    """``count`` numbered lines of 10 bytes from ``first`` on."""
    return b"".join(b"line %04d\n" % n for n in range(first, first + count))


def files(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in directory.iterdir() if p.name != LOCK_FILE}


def read_all(directory: Path) -> bytes:
    out = io.BytesIO()
    with LogReader(directory) as reader:
        reader.copy(out)
    return out.getvalue()


def test_rotates_at_the_cap_keeping_max_files(tmp_path):
    with LogWriter(tmp_path, LIMITS) as writer:
        for n in range(0, 100, 7):  # chunks that straddle the cap
            writer.write(lines(n, 7))
    # 105 lines of 10 bytes: 11 files of 100 bytes made, the 3 newest kept.
    assert files(tmp_path) == {LOG_FILE: 50, f"{LOG_FILE}.1": 100, f"{LOG_FILE}.2": 100}
    assert (tmp_path / LOG_FILE).stat().st_mode & 0o777 == 0o600
    assert read_all(tmp_path) == lines(80, 25)


def test_one_file_starts_over(tmp_path):
    with LogWriter(tmp_path, LogLimits(max_size=100, max_files=1)) as writer:
        writer.write(lines(0, 25))
    assert files(tmp_path) == {LOG_FILE: 50}
    assert read_all(tmp_path) == lines(20, 5)


def test_a_reader_reads_on_through_rotations(tmp_path):
    with LogWriter(tmp_path, LIMITS) as writer, LogReader(tmp_path) as reader:
        out = io.BytesIO()
        writer.write(lines(0, 3))
        reader.copy(out)
        assert out.getvalue() == lines(0, 3)
        writer.write(lines(3, 15))  # a rotation: what it was reading is now .1
        reader.copy(out)
        assert out.getvalue() == lines(0, 18)
        # Four rotations: its file, open, is gone from the directory; it ends it, then
        # goes on from the oldest file kept (lines 20-29 were rotated away unread).
        writer.write(lines(18, 40))
        reader.copy(out)
        assert out.getvalue() == lines(0, 20) + lines(30, 28)
        reader.copy(out)
        assert out.getvalue() == lines(0, 20) + lines(30, 28)


def test_a_reader_opening_the_files_never_blocks_the_writer(tmp_path):
    with LogWriter(tmp_path, LIMITS) as writer:
        writer.write(lines(0, 10))
        with FileLock(tmp_path / LOCK_FILE, shared=True):  # a reader opening the files
            writer.write(lines(10, 5))  # over the cap: rotation waits for a later write
        assert files(tmp_path) == {LOG_FILE: 150}
        writer.write(lines(15, 1))
    assert files(tmp_path) == {LOG_FILE: 10, f"{LOG_FILE}.1": 150}
    assert read_all(tmp_path) == lines(0, 16)


def test_a_smaller_max_file_drops_the_older_files(tmp_path):
    with LogWriter(tmp_path, LogLimits(max_size=100, max_files=5)) as writer:
        writer.write(lines(0, 45))
    assert len(files(tmp_path)) == 5
    append(tmp_path, LIMITS, b"error\n")
    assert files(tmp_path) == {LOG_FILE: 56, f"{LOG_FILE}.1": 100, f"{LOG_FILE}.2": 100}
    assert read_all(tmp_path) == lines(20, 25) + b"error\n"


def test_follow_reads_through_rotations_until_told(tmp_path):
    writer = LogWriter(tmp_path, LIMITS)
    writer.write(lines(0, 5))
    steps = iter([lines(5, 12), lines(17, 1), lines(18, 25)])

    def until() -> bool:  # asked before each wait: the container writes meanwhile
        chunk = next(steps, None)
        if chunk is None:
            return True
        writer.write(chunk)
        return False

    out = io.BytesIO()
    try:
        follow(tmp_path, out, until=until)
    finally:
        writer.close()
    assert out.getvalue() == lines(0, 43)


def test_no_log_yet_reads_nothing(tmp_path):
    assert read_all(tmp_path) == b""


@pytest.mark.parametrize("limits", [(0, 3), (100, 0)])
def test_limits_are_positive(limits):
    with pytest.raises(ValueError):
        LogLimits(*limits)


def test_a_symlink_as_the_log_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    os.symlink(target, tmp_path / LOG_FILE)
    with pytest.raises(OSError):
        LogWriter(tmp_path, LIMITS)
    assert target.read_bytes() == b""


def test_a_rotation_renames_only_what_is_there(tmp_path):
    with LogWriter(tmp_path, LogLimits(max_size=10, max_files=100)) as writer:
        writer.write(lines(0, 3))  # two rotations among a hundred files allowed
    assert sorted(files(tmp_path)) == [LOG_FILE, f"{LOG_FILE}.1", f"{LOG_FILE}.2"]
    assert read_all(tmp_path) == lines(0, 3)
    with pytest.raises(ValueError):
        LogLimits(max_size=10, max_files=101)
