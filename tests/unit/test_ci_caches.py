"""Cache dirs keyed by the content of workspace files."""

from __future__ import annotations

import pytest

from dockyard.ci.caches import cache_name, files_key, locked
from dockyard.files.locking import FileLock
from tests.support.renames import renaming


def test_the_key_follows_the_files_content(tmp_path):
    (tmp_path / "requirements.txt").write_text("flask==3.0\n")
    first = files_key(tmp_path, ["requirements.txt"])
    assert first == files_key(tmp_path, ["requirements.txt"])
    (tmp_path / "requirements.txt").write_text("flask==3.1\n")
    assert files_key(tmp_path, ["requirements.txt"]) != first
    assert files_key(tmp_path, []) == ""
    assert cache_name("p", "/c") == cache_name("p", "/c", "")  # unkeyed names unchanged
    assert cache_name("p", "/c", first) != cache_name("p", "/c")


def test_a_missing_file_is_a_content_of_its_own(tmp_path):
    missing = files_key(tmp_path, ["requirements.txt"])
    (tmp_path / "requirements.txt").write_text("")
    assert files_key(tmp_path, ["requirements.txt"]) != missing


def test_a_concurrent_rename_does_not_change_the_key(tmp_path):
    # A key file read as missing (openat2's EAGAIN on a lookup through "..", which a
    # rename anywhere can cause) would pick an empty cache.
    workspace = tmp_path / "ws"
    (workspace / "sub").mkdir(parents=True)
    (workspace / "requirements.txt").write_text("flask==3.0\n")
    (workspace / "sub/link").symlink_to("../" + "sub/../" * 12 + "requirements.txt")
    expected = files_key(workspace, ["sub/link"])
    with renaming(tmp_path / "renames"):
        keys = {files_key(workspace, ["sub/link"]) for _ in range(2000)}
    assert keys == {expected}
    (workspace / "requirements.txt").unlink()
    assert files_key(workspace, ["sub/link"]) != expected  # it was read, not missing


def test_a_locked_cache_waits_for_its_holder_and_gives_up_as_told(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    notes: list[str] = []
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise TimeoutError

    with FileLock(tmp_path / "b", directory=True):  # another step holds b
        with (
            pytest.raises(TimeoutError),
            locked({"/a": tmp_path / "a", "/b": tmp_path / "b"}, wait, notes.append),
        ):
            pass
        assert notes == ["cache /b is in use by another step: waiting for it"]
        assert len(waits) == 3
        with FileLock(tmp_path / "a", directory=True):
            pass  # a was let go when it gave up
    with locked({"/a": tmp_path / "a", "/b": tmp_path / "b"}, wait, notes.append):
        other = FileLock(tmp_path / "a", directory=True)
        assert not other.acquire(blocking=False)  # held for the block
    assert other.acquire(blocking=False)
    other.release()
