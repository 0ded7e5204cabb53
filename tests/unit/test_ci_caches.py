"""Cache dirs keyed by the content of workspace files."""

from __future__ import annotations

from dockyard.ci.caches import cache_name, files_key


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
