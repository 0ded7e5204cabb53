"""Copying an upper dir into a snapshot: faithful to what overlayfs reads, and sharing
an older snapshot's inode only for an entry identical in every respect."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.runtime.treecopy import clone_tree, copy_tree, same_but_times

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="owners and whiteouts need root")

MTIME = 1_600_000_000_123_456_789


def describe(root: Path) -> dict[str, tuple]:
    """Everything overlayfs and the layer packer read of each entry, hardlinks as
    groups of paths."""
    seen: dict[int, str] = {}
    out: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        kind = stat.S_IFMT(st.st_mode)
        detail: object = None
        if kind == stat.S_IFREG:
            detail = path.read_bytes()
        elif kind == stat.S_IFLNK:
            detail = os.readlink(path)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            detail = st.st_rdev
        xattrs = {
            a: os.getxattr(path, a, follow_symlinks=False)
            for a in os.listxattr(path, follow_symlinks=False)
        }
        link_of = seen.setdefault(st.st_ino, rel) if kind == stat.S_IFREG else None
        mtime = None if kind == stat.S_IFDIR and rel == "" else st.st_mtime_ns
        out[rel] = (st.st_mode, st.st_uid, st.st_gid, mtime, detail, xattrs, link_of)
    return out


def write(path: Path, data: bytes, *, mode=0o644, owner=(0, 0), mtime=MTIME) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chown(path, *owner)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime, mtime))
    return path


def upper_dir(root: Path) -> Path:
    """An upper dir with every kind of entry an overlay or a COPY leaves."""
    write(root / "app/plain.txt", b"plain\n")
    write(root / "app/setuid", b"\x7fELF", mode=0o4755, owner=(7, 8))
    big = write(root / "app/big.bin", os.urandom(3 << 20))
    os.link(big, root / "app/big-link.bin")
    os.setxattr(root / "app/plain.txt", "user.note", b"kept")
    (root / "app/empty").mkdir()
    os.symlink("../app/plain.txt", root / "app/link")
    os.mknod(root / "app/deleted", stat.S_IFCHR, os.makedev(0, 0))  # a whiteout
    os.mkfifo(root / "app/fifo")
    for name in ("link", "deleted", "fifo"):
        os.utime(root / "app" / name, ns=(MTIME, MTIME), follow_symlinks=False)
    (root / "opaque").mkdir()
    os.setxattr(root / "opaque", "trusted.overlay.opaque", b"y")
    os.setxattr(root / "app", "trusted.overlay.origin", b"\x00host-handle")
    os.chmod(root / "opaque", 0o1777)
    os.utime(root / "app", ns=(MTIME, MTIME))
    return root


def test_copy_is_faithful_but_for_overlay_bookkeeping(tmp_path):
    source = upper_dir(tmp_path / "upper")
    target = tmp_path / "snapshot"
    target.mkdir()
    stats = copy_tree(str(source), str(target))

    expected = describe(source)
    mode, uid, gid, mtime, detail, _, link = expected["app"]
    expected["app"] = (mode, uid, gid, mtime, detail, {}, link)  # origin names the upper's fs
    assert describe(target) == expected
    assert describe(target)["opaque"][5] == {"trusted.overlay.opaque": b"y"}
    assert os.stat(target / "app/big.bin").st_ino == os.stat(target / "app/big-link.bin").st_ino
    assert stats.shared == 0


def test_identical_entries_share_the_older_snapshots_inodes(tmp_path):
    older = upper_dir(tmp_path / "older")
    source = upper_dir(tmp_path / "upper")
    (source / "app/big.bin").unlink()
    (source / "app/big-link.bin").unlink()
    write(source / "app/big.bin", (older / "app/big.bin").read_bytes())
    write(source / "app/new.txt", b"new\n")
    target = tmp_path / "snapshot"
    target.mkdir()
    stats = copy_tree(str(source), str(target), share_with=str(older))

    assert describe(target) == {
        **describe(source),
        "app": describe(target)["app"],  # no origin xattr, as above
    }
    for name in ("plain.txt", "setuid", "big.bin", "link", "deleted", "fifo"):
        assert (target / "app" / name).lstat().st_ino == (older / "app" / name).lstat().st_ino
    assert (target / "app/new.txt").stat().st_nlink == 1
    assert stats.shared == 6 and stats.copied > 0


@pytest.mark.parametrize(
    "change",
    ["bytes", "mode", "owner", "mtime", "xattr", "link target", "directory there"],
)
def test_a_difference_of_any_kind_means_a_copy(tmp_path, change):
    older = tmp_path / "older"
    source = tmp_path / "upper"
    for root in (older, source):
        write(root / "f", b"same size, same time\n")
        os.symlink("target", root / "l")
        os.utime(root / "l", ns=(MTIME, MTIME), follow_symlinks=False)
    theirs = older / "f"
    if change == "bytes":  # what an edit that keeps size and mtime looks like
        write(theirs, b"SAME SIZE, SAME TIME\n")
    elif change == "mode":
        theirs.chmod(0o600)
    elif change == "owner":
        os.chown(theirs, 1, 1)
    elif change == "mtime":
        os.utime(theirs, ns=(MTIME, MTIME + 1))
    elif change == "xattr":
        os.setxattr(theirs, "user.extra", b"1")
    elif change == "link target":
        (older / "l").unlink()
        os.symlink("tarjet", older / "l")  # as long as "target": the size says nothing
        os.utime(older / "l", ns=(MTIME, MTIME), follow_symlinks=False)
    else:
        theirs.unlink()
        theirs.mkdir()
    before = describe(older)
    target = tmp_path / "snapshot"
    target.mkdir()
    copy_tree(str(source), str(target), share_with=str(older))

    assert describe(target) == describe(source)
    assert describe(older) == before  # the older snapshot is never touched
    changed = "l" if change == "link target" else "f"
    assert (target / changed).lstat().st_ino != (older / changed).lstat().st_ino


def test_a_missing_older_snapshot_means_a_plain_copy(tmp_path):
    source = upper_dir(tmp_path / "upper")
    target = tmp_path / "snapshot"
    target.mkdir()
    stats = copy_tree(str(source), str(target), share_with=str(tmp_path / "gone"))
    assert stats.shared == 0
    assert (target / "app/plain.txt").read_bytes() == b"plain\n"


def test_a_clone_links_every_file_makes_directories_and_skips_what_it_is_told(tmp_path):
    """A snapshot cloned for an incremental COPY: each non-directory the very inode
    (hardlinks stay one inode), directories new with the same metadata and kept
    xattrs, the skipped paths left out."""
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    copy_tree(str(upper_dir(tmp_path / "upper")), str(snapshot))
    target = tmp_path / "clone"
    target.mkdir()
    stats = clone_tree(str(snapshot), str(target), skip={"app/plain.txt", "app/fifo"})

    expected = describe(snapshot)
    del expected["app/plain.txt"], expected["app/fifo"]
    assert describe(target) == expected
    for name in ("setuid", "big.bin", "big-link.bin", "link", "deleted"):
        assert (target / "app" / name).lstat().st_ino == (snapshot / "app" / name).lstat().st_ino
    assert (target / "app").stat().st_ino != (snapshot / "app").stat().st_ino
    assert stats.shared == 5


@pytest.mark.parametrize("where", [None, 0, (1 << 20) + 5, (3 << 20) + 100])
def test_same_but_times_compares_every_byte_of_a_big_file(tmp_path, where):
    """A file of several read chunks and a partial last one: a byte changed in any of
    them is a difference, new times are not."""
    data = bytearray(os.urandom((3 << 20) + 123))
    write(tmp_path / "a/big.bin", bytes(data))
    if where is not None:
        data[where] ^= 1
    write(tmp_path / "b/big.bin", bytes(data), mtime=MTIME + 10**9)
    assert same_but_times(str(tmp_path / "a"), str(tmp_path / "b")) is (where is None)
