"""Glob patterns over directory fds: glob.glob's matches on a tree without symlinks,
and symlinks matched as entries, never entered."""

from __future__ import annotations

import glob
import os

import pytest

from dockyard.ci.treeglob import DIR_FLAGS, TreeError, matches, split_pattern

PATTERNS = [
    "*", "**", "**/*", "a/**", "a/**/*.txt", "**/*.txt", "a/*/c.txt", "a/b/**/d",
    "**/b/**", ".hidden/*", "*/.*", "a/b?/*", "a/[bx]*/c.txt", "a/**/**/c.txt",
    "a/b/c.txt", "a", "**/d/**", "a/*", "a/b",
]  # fmt: skip


@pytest.fixture
def tree(tmp_path):
    for path in ["a/b/c.txt", "a/b/d/e.txt", "a/bx/c.txt", "a/f.txt", ".hidden/g", "a/.h"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(path)
    (tmp_path / "a/b/d/d").mkdir()
    return tmp_path


def walk(root, pattern: str, **kw) -> list[str]:
    fd = os.open(root, DIR_FLAGS)
    try:
        return [m.path for m in matches(fd, pattern, **kw)]
    finally:
        os.close(fd)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_matches_are_globs_matches_without_links(tree, pattern):
    expected = glob.glob(pattern, root_dir=tree, recursive=True, include_hidden=True)
    in_order = sorted({p.rstrip("/") for p in expected}, key=lambda p: p.split("/"))
    assert walk(tree, pattern) == in_order


def test_a_missing_directory_matches_nothing(tree):
    assert walk(tree, "nothing/**") == []  # glob.glob says ["nothing/"]


def test_a_matched_directory_is_not_entered_unless_asked(tree):
    assert walk(tree, "a/**", enter_matches=False) == ["a"]
    assert walk(tree, "**/*.txt", enter_matches=False) == walk(tree, "**/*.txt")


def test_symlinks_are_matched_and_never_entered(tree):
    (tree / "a" / "up").symlink_to("..")
    (tree / "a" / "file-link").symlink_to("f.txt")
    found = walk(tree, "**")
    assert "a/up" in found and "a/file-link" in found
    assert not any(p.startswith("a/up/") for p in found)
    assert walk(tree, "a/up/*") == []


def test_the_root_and_consecutive_stars(tree):
    assert walk(tree, ".") == ["."]
    assert split_pattern("./a//**/**/b/") == ("a", "**", "b")


def test_a_tree_deeper_than_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("dockyard.ci.treeglob.MAX_DEPTH", 3)
    (tmp_path / "1/2/3/4").mkdir(parents=True)
    assert walk(tmp_path, "*/*") == ["1/2"]
    with pytest.raises(TreeError, match="deeper than 3"):
        walk(tmp_path, "**")
