"""Trees on disk for the overlay and layer tests: a lower tree, the changes made in a
merged dir above it, and a comparison of two trees with their metadata."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections import defaultdict
from pathlib import Path


def snapshot(root: Path, *, dir_mtimes: bool = True) -> tuple[dict[str, tuple], list]:
    """path -> (type, mode, uid, gid, content | target | device, mtime, xattrs), and the
    groups of hardlinked paths."""
    entries: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], list[str]] = defaultdict(list)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            fmt = stat.S_IFMT(st.st_mode)
            content: object = None
            if fmt == stat.S_IFREG:
                content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    inodes[(st.st_dev, st.st_ino)].append(rel)
            elif fmt == stat.S_IFLNK:
                content = os.readlink(path)
            elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
                content = st.st_rdev
            xattrs = tuple(
                (a, os.getxattr(path, a, follow_symlinks=False))
                for a in sorted(os.listxattr(path, follow_symlinks=False))
                if a.startswith(("user.", "security."))
            )
            mtime = None if fmt == stat.S_IFDIR and not dir_mtimes else int(st.st_mtime)
            mode = stat.S_IMODE(st.st_mode)
            entries[rel] = (fmt, mode, st.st_uid, st.st_gid, content, mtime, xattrs)
    return entries, sorted(sorted(g) for g in inodes.values() if len(g) > 1)


def assert_same_tree(ours: Path, theirs: Path, *, dir_mtimes: bool = True) -> None:
    mine, my_links = snapshot(ours, dir_mtimes=dir_mtimes)
    other, other_links = snapshot(theirs, dir_mtimes=dir_mtimes)
    only_mine = sorted(set(mine) - set(other))
    only_theirs = sorted(set(other) - set(mine))
    assert (only_mine, only_theirs) == ([], [])
    different = {p: (mine[p], other[p]) for p in mine if mine[p] != other[p]}
    assert different == {}
    assert my_links == other_links


def build_lower(lower: Path) -> None:
    for d in ("etc", "usr/bin", "var/cache/sub", "opt/app/deep", "home/user", "dir2file"):
        (lower / d).mkdir(parents=True, exist_ok=True)
    (lower / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (lower / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (lower / "etc/keep").write_text("unchanged\n")
    (lower / "usr/bin/a").write_bytes(os.urandom(50_000))
    os.link(lower / "usr/bin/a", lower / "usr/bin/b")
    (lower / "var/cache/x").write_text("x\n")
    (lower / "var/cache/sub/y").write_text("y\n")
    (lower / "opt/app/1").write_text("one\n")
    (lower / "opt/app/deep/2").write_text("two\n")
    (lower / "home/user/.profile").write_text("export A=1\n")
    (lower / "dir2file/child").write_text("c\n")
    (lower / "file2dir").write_text("f\n")
    (lower / "link").symlink_to("etc/passwd")


def change_merged(merged: Path) -> None:
    """What a RUN step might do: edits, deletions, replacements, renames, new links."""
    (merged / "etc/hosts").write_text("127.0.0.1 localhost\n10.0.0.1 db\n")
    (merged / "etc/passwd").chmod(0o600)
    (merged / "usr/bin/b").unlink()
    subprocess.run(["rm", "-rf", str(merged / "var/cache")], check=True)
    subprocess.run(["rm", "-rf", str(merged / "opt/app")], check=True)
    (merged / "opt/app").mkdir()  # re-created over a deleted lower dir: opaque
    (merged / "opt/app/3").write_text("three\n")
    (merged / "new/sub").mkdir(parents=True)
    (merged / "new/sub/file").write_text("new\n")
    os.link(merged / "new/sub/file", merged / "new/hard")
    (merged / "new/sym").symlink_to("/etc/hosts")
    subprocess.run(["rm", "-rf", str(merged / "dir2file")], check=True)
    (merged / "dir2file").write_text("now a file\n")
    (merged / "file2dir").unlink()
    (merged / "file2dir").mkdir()
    (merged / "file2dir/inner").write_text("inner\n")
    (merged / "link").unlink()
    (merged / "link").symlink_to("etc/hosts")
    # Renaming a lower directory (with redirect_dir=off: copy + delete).
    subprocess.run(["mv", str(merged / "home/user"), str(merged / "home/person")], check=True)
