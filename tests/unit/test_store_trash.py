"""Deleting trees crash-safely: into the trash first, then gone, whatever the modes."""

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

from dockyard.store.trash import is_trash, move_to_trash, remove_tree, tree_stats

NOBODY = 65534


def test_remove_tree_counts_each_file_once_and_leaves_nothing(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub/deeper").mkdir(parents=True)
    (tree / "a").write_bytes(b"12345")
    os.link(tree / "a", tree / "sub/hardlink-to-a")
    (tree / "sub/symlink").symlink_to("a")
    (tree / "sub/deeper/b").write_bytes(b"678")
    assert remove_tree(tree) == 5 + len("a") + 3
    assert not tree.exists()
    assert remove_tree(tree) == 0  # missing is fine


def test_remove_tree_counts_no_file_linked_from_outside(tmp_path):
    """Snapshots share inodes: deleting one frees only what no other one links."""
    tree, other = tmp_path / "tree", tmp_path / "other"
    tree.mkdir()
    other.mkdir()
    (tree / "own").write_bytes(b"123")
    (tree / "shared").write_bytes(b"4567")
    os.link(tree / "shared", other / "shared")
    assert remove_tree(tree) == 3
    assert (other / "shared").read_bytes() == b"4567"


def test_move_to_trash_renames_the_tree_beside_itself(tmp_path):
    tree = tmp_path / "0123abcd"
    tree.mkdir()
    (tree / "f").write_bytes(b"x")
    trashed = move_to_trash(tree)
    assert trashed is not None and trashed.parent == tmp_path and is_trash(trashed.name)
    assert not tree.exists() and (trashed / "f").read_bytes() == b"x"
    assert move_to_trash(tree) is None


def _make_and_remove_as_nobody(directory: str, result_fd: int) -> None:
    if os.geteuid() == 0:  # root may enter anything: be the owner that may not
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    tree = Path(directory) / "scratch"
    (tree / "work/work").mkdir(parents=True)
    (tree / "work/work").chmod(0)  # what overlayfs leaves in a work dir
    (tree / "locked/inner").mkdir(parents=True)
    (tree / "locked/inner/f").write_bytes(b"abc")
    (tree / "locked/inner").chmod(0)
    (tree / "locked").chmod(0)
    (tree / "read-only").mkdir()
    (tree / "read-only/g").write_bytes(b"de")
    (tree / "read-only").chmod(0o500)
    freed = remove_tree(tree)
    os.write(result_fd, f"{freed} {tree.exists()}".encode())


def test_remove_tree_opens_up_directories_their_owner_may_not_enter(tmp_path):
    directory = tempfile.mkdtemp()  # not under tmp_path: nobody may not reach that
    try:
        if os.geteuid() == 0:
            os.chown(directory, NOBODY, NOBODY)
        result_r, result_w = os.pipe()
        child = multiprocessing.get_context("fork").Process(
            target=_make_and_remove_as_nobody, args=(directory, result_w)
        )
        child.start()
        child.join()
        os.close(result_w)
        with os.fdopen(result_r) as result:
            outcome = result.read()
        assert child.exitcode == 0
        # The files in dirs it could not read are not counted beforehand, only deleted.
        assert outcome == f"{len(b'de')} False"
        assert os.listdir(directory) == []
    finally:
        shutil.rmtree(directory)


def test_tree_stats_size_and_last_write(tmp_path):
    tree, other = tmp_path / "tree", tmp_path / "other"
    (tree / "sub/deeper").mkdir(parents=True)
    other.mkdir()
    (tree / "a").write_bytes(b"12345")
    os.link(tree / "a", tree / "sub/a-again")  # counted once
    (tree / "shared").write_bytes(b"678")
    os.link(tree / "shared", other / "shared")  # deleting the tree frees none of it
    (tree / "sub/deeper/newest").write_bytes(b"9")
    for path, seconds in [(tree / "a", 100), (tree / "sub/deeper", 200), (tree, 300)]:
        os.utime(path, (seconds, seconds))
    os.utime(tree / "shared", (400, 400))
    os.utime(tree / "sub/deeper/newest", (500, 500))
    os.utime(tree / "sub", (50, 50))
    assert tree_stats(tree) == (5 + 1, 500.0)  # "a" once, "newest"; not "shared"
    os.utime(tree / "sub/deeper/newest", (150, 150))
    assert tree_stats(tree)[1] == 400.0  # the tree's own and every entry's mtime count
    assert tree_stats(tmp_path / "missing") == (0, 0.0)
