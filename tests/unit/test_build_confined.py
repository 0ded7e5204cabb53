import os
from pathlib import Path

import pytest

from dockyard.builder.confined import ConfinedDir, ConfinedFile
from dockyard.errors import BuildError


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "outside").write_text("outside\n")
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_text("inside\n")
    (root / "abs").symlink_to(tmp_path / "outside")
    (root / "rel").symlink_to("../outside")
    (root / "to-f").symlink_to("/d/f")  # absolute, inside the root
    (root / "dir-link").symlink_to(tmp_path)
    os.mkfifo(root / "fifo")
    return root


def test_reads_resolve_inside_the_root(tree: Path) -> None:
    with ConfinedDir.open(tree) as root:
        assert root.read_file("d/f") == b"inside\n"
        assert root.read_file("to-f") == b"inside\n"
        assert root.read_file("abs") is None  # /outside inside the root: none
        assert root.read_file("rel") is None  # .. stops at the root
        assert root.read_file("dir-link/outside") is None
        assert root.read_file("fifo") is None  # and did not block
        assert root.read_file("d") is None
        assert ConfinedFile(root, "d/f").sibling("g").name == "d/g"


def test_subdir_and_lstat_stay_inside(tree: Path) -> None:
    with ConfinedDir.open(tree) as root:
        with root.subdir("d") as sub:
            assert sub.read_file("f") == b"inside\n"
            assert sub.read_file("../../outside") is None
            assert sub.path == tree / "d"
        with pytest.raises(BuildError, match="cannot open dir-link/x"):
            root.subdir("dir-link/x")
        st = root.lstat("abs")
        assert st is not None and os.path.islink(tree / "abs")
        assert root.lstat("missing/x") is None


def test_the_opened_directory_is_kept_when_its_path_changes(tree: Path, tmp_path: Path) -> None:
    root = ConfinedDir.open(tree)
    tree.rename(tmp_path / "moved")
    tree.symlink_to(tmp_path)
    assert root.read_file("d/f") == b"inside\n"
    assert root.read_file("outside") is None
    root.close()


def test_a_file_over_the_limit_is_an_error(tree: Path) -> None:
    with ConfinedDir.open(tree) as root, pytest.raises(BuildError, match="larger than 3"):
        root.read_file("d/f", limit=3)
