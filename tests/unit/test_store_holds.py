"""Holds: names a live process keeps from a prune; a dead process holds nothing."""

import gc
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from dockyard.store.holds import Hold, held_names
from tests.killing import killed_when_ready


def test_a_live_hold_keeps_its_names_until_released(tmp_path):
    hold = Hold(tmp_path / "holds")
    assert held_names(tmp_path / "holds") == set()
    assert not (tmp_path / "holds").exists()  # nothing held, no file
    hold.add(["a", "b"])
    hold.add(["b", "c"])
    assert "a" in hold and "z" not in hold
    assert held_names(tmp_path / "holds") == {"a", "b", "c"}
    assert (tmp_path / "holds").iterdir().__next__().read_text() == "a\nb\nc\n"
    hold.release()
    assert held_names(tmp_path / "holds") == set()
    assert list((tmp_path / "holds").iterdir()) == []
    hold.release()  # twice is fine


def test_a_reader_never_meets_a_hold_file_before_it_is_locked(tmp_path, monkeypatch):
    """A reader that came between a hold file's creation and its lock would take it
    for a dead process's and delete it; the file is locked before it is visible."""
    import fcntl

    from dockyard.store import holds

    seen: list[set[str]] = []
    flock = fcntl.flock

    def reader_first(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX:  # the owner's lock: a prune comes just before it
            seen.append(held_names(tmp_path / "holds"))
        flock(fd, operation)

    monkeypatch.setattr(holds.fcntl, "flock", reader_first)
    hold = Hold(tmp_path / "holds")
    hold.add(["a"])
    monkeypatch.setattr(holds.fcntl, "flock", flock)
    assert seen[0] == set()
    assert held_names(tmp_path / "holds") == {"a"}
    hold.release()


def test_a_forgotten_hold_is_released_when_collected(tmp_path):
    hold = Hold(tmp_path / "holds")
    hold.add(["a"])
    del hold
    gc.collect()
    assert list((tmp_path / "holds").iterdir()) == []


def _hold_until_killed(directory: Path, ready_fd: int) -> None:
    hold = Hold(directory)
    hold.add(["held-by-the-dead"])
    os.write(ready_fd, b"1")
    signal.pause()  # the parent kills us here


def test_the_hold_of_a_killed_process_is_dead_and_its_file_deleted(tmp_path):
    with killed_when_ready(_hold_until_killed, tmp_path / "holds"):
        assert held_names(tmp_path / "holds") == {"held-by-the-dead"}
    assert held_names(tmp_path / "holds") == set()
    assert list((tmp_path / "holds").iterdir()) == []


def test_a_forked_child_exiting_leaves_its_parents_hold_alone(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from dockyard.store.holds import Hold, held_names
        hold = Hold(Path({str(tmp_path / "holds")!r}))
        hold.add(["parent's"])
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # a normal exit: finalizers run in the child
        os.waitpid(pid, 0)
        print(sorted(held_names(Path({str(tmp_path / "holds")!r}))))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout == '["parent\'s"]\n'
