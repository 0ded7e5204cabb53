"""``container diff`` from an upper dir and its lower dirs, by overlayfs's rules (the
whiteouts and opaque dirs are made by hand, as overlayfs makes them: needs root)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from dockyard.containers.diff import changes, unchanged

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteout devices need root")


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def opaque(path: Path) -> None:
    os.setxattr(path, "trusted.overlay.opaque", b"y")


def tree(root: Path, files: dict[str, str | None]) -> Path:
    """Files (text), dirs (None, or a name ending in /)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name.rstrip("/")
        if text is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return root


def test_added_changed_deleted(tmp_path):
    lower = tree(tmp_path / "l", {"etc/keep": "k", "etc/edit": "1", "etc/gone": "g", "var/": None})
    upper = tree(tmp_path / "u", {"etc/edit": "2", "new/file": "n"})
    whiteout(upper / "etc/gone")
    whiteout(upper / "var")
    assert changes(upper, [lower]) == [
        ("C", "/etc"),
        ("C", "/etc/edit"),
        ("D", "/etc/gone"),
        ("A", "/new"),
        ("A", "/new/file"),
        ("D", "/var"),
    ]


def test_opaque_dir_deletes_what_was_below_and_adds_what_is_in_it(tmp_path):
    lower = tree(tmp_path / "l", {"app/a": "a", "app/b": "b"})
    upper = tree(tmp_path / "u", {"app/b": "new b", "app/c": "c"})
    opaque(upper / "app")
    assert changes(upper, [lower]) == [
        ("C", "/app"),
        ("D", "/app/a"),
        ("A", "/app/b"),
        ("A", "/app/c"),
    ]


def test_dir_to_file_and_file_to_dir(tmp_path):
    lower = tree(tmp_path / "l", {"d2f/child": "c", "f2d": "f"})
    upper = tree(tmp_path / "u", {"d2f": "now a file", "f2d/inner": "i"})
    assert changes(upper, [lower]) == [
        ("C", "/d2f"),
        ("C", "/f2d"),
        ("A", "/f2d/inner"),
    ]


def test_layers_merge_through_dirs_and_stop_at_whiteouts_and_opaque_dirs(tmp_path):
    bottom = tree(tmp_path / "l0", {"a/from-bottom": "0", "b/old": "0", "c/x": "0"})
    top = tree(tmp_path / "l1", {"a/from-top": "1", "b/": None, "c/": None})
    whiteout(top / "c/x")  # deleted by the top layer
    opaque(top / "b")  # b's bottom content hidden by the top layer
    upper = tree(tmp_path / "u", {"a/from-bottom": "edit", "b/old": "again", "c/x": "again"})
    assert changes(upper, [top, bottom]) == [
        ("C", "/a"),
        ("C", "/a/from-bottom"),  # seen through the top layer's a/
        ("C", "/b"),
        ("A", "/b/old"),  # hidden below an opaque dir: new
        ("C", "/c"),
        ("A", "/c/x"),  # deleted below: new
    ]


def test_nothing_changed_and_whiteout_of_nothing(tmp_path):
    lower = tree(tmp_path / "l", {"a": "a"})
    upper = tree(tmp_path / "u", {})
    assert changes(upper, [lower]) == []
    whiteout(upper / "never-was")
    assert changes(upper, [lower]) == []
    assert changes(tree(tmp_path / "u2", {"x": "x"}), []) == [("A", "/x")]  # scratch


def test_a_dir_merely_copied_up_is_no_change(tmp_path):
    """overlayfs copies a directory up to create something in it (runc's mount stubs,
    removed after the run, the times restored): the same metadata and nothing in it
    changed is no change (docker's diff skips it too)."""
    lower = tree(tmp_path / "l", {"etc/hosts": "h", "usr/bin/a": "a"})
    os.setxattr(lower / "etc", "user.note", b"n")
    upper = tmp_path / "u"
    for d in ("etc", "usr", "usr/bin"):
        (upper / d).mkdir(parents=True)
    for d in ("etc", "usr", "usr/bin", "."):  # as copy-up leaves them, overlay's marks too
        shutil.copystat(lower / d, upper / d)
    os.setxattr(upper / "etc", "trusted.overlay.origin", b"x")
    assert changes(upper, [lower]) == []
    assert unchanged(upper, [lower])
    os.setxattr(upper / "etc", "user.note", b"other")
    assert changes(upper, [lower]) == [("C", "/etc")]
    os.setxattr(upper / "etc", "user.note", b"n")
    (upper / "usr/bin").chmod(0o700)
    assert changes(upper, [lower]) == [("C", "/usr"), ("C", "/usr/bin")]
    shutil.copystat(lower / "usr/bin", upper / "usr/bin")
    whiteout(upper / "usr/bin/a")  # a change inside makes its unchanged parents changed
    shutil.copystat(lower / "usr/bin", upper / "usr/bin")
    assert changes(upper, [lower]) == [("C", "/usr"), ("C", "/usr/bin"), ("D", "/usr/bin/a")]
    assert not unchanged(upper, [lower])
