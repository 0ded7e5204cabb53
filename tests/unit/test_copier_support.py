"""Helpers for the copier tests: instructions from Dockerfile text, running a COPY/ADD
into a plain directory standing in for the overlay's merged dir, snapshots of trees."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.builder import copier
from dockyard.builder.context import BuildContext
from dockyard.builder.frontend.dockerignore import IgnoreMatcher
from dockyard.builder.frontend.parse import parse_instruction
from dockyard.builder.frontend.parser import parse

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="writes 0:0 owners: needs root")


def instruction(text: str, env: dict[str, str] | None = None):
    """The expanded COPY/ADD of ``text`` (line 2 of a Dockerfile called Dockerfile)."""
    df = parse(f"FROM base\n{text}\n", file="Dockerfile")
    return parse_instruction(df.nodes[1], df.escape, "Dockerfile").expand(env or {})


def context(root: Path, ignore: list[str] | None = None) -> BuildContext:
    if not ignore:
        return BuildContext(root)
    matcher = IgnoreMatcher(ignore)
    return BuildContext(root, matcher.excluded, matcher.may_contain)


def run(
    text: str,
    rootfs: Path,
    ctx: Path | BuildContext | None = None,
    *,
    workdir: str = "/",
    source_root: Path | None = None,
    ignore: list[str] | None = None,
    **kw,
) -> copier.CopyPlan:
    """Plan and execute ``text`` into ``rootfs``; return the (closed) plan."""
    if isinstance(ctx, Path):
        ctx = context(ctx, ignore)
    with copier.plan_copy(instruction(text), ctx, source_root) as plan:
        copier.execute_copy(plan, rootfs, workdir=workdir, **kw)
    return plan


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything under ``root``: type, mode, owner, and content or link target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                detail: object = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                detail = path.read_bytes()
            else:
                detail = None
            rel = str(path.relative_to(root))
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            out[rel] += (detail, st.st_mtime_ns)
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def owner(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid


@pytest.mark.parametrize("size", [0, 1, 4097, (1 << 20) + 3])
@pytest.mark.parametrize("source_dir", ["same", "/dev/shm"])
def test_data_copier_copies_exact_bytes_across_filesystems(tmp_path, size, source_dir):
    """copy_file_range where it works, sendfile where it fails (across filesystems, as
    into an overlay mount): the same bytes either way, for one copier used many times."""
    from dockyard.builder.copier.writer import _DataCopier

    where = tmp_path if source_dir == "same" else Path(source_dir)
    if not where.is_dir():
        pytest.skip(f"no {source_dir}")
    data = os.urandom(size)
    source = where / f"dockyard-src-{os.getpid()}-{size}"
    source.write_bytes(data)
    copier_ = _DataCopier()
    try:
        for n in range(2):
            target = tmp_path / f"copy{n}"
            src = os.open(source, os.O_RDONLY)
            dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                copier_.copy(src, dst, size)
            finally:
                os.close(src)
                os.close(dst)
            assert target.read_bytes() == data
    finally:
        source.unlink()


def test_rootfs_digest_follows_content_and_metadata_but_not_times(tmp_path):
    from dockyard.builder.copier.sources import Filters, RootfsTree, build_node, rootfs_digest

    root = tmp_path / "stage"
    (root / "app").mkdir(parents=True)
    (root / "app/bin").write_bytes(b"binary")
    (root / "app/link").symlink_to("bin")

    def digest() -> str:
        tree = RootfsTree(root)
        try:
            node = build_node(tree, "app", "app", Filters.make(()))
            return rootfs_digest(tree, [("app", "app", node)])
        finally:
            tree.close()

    first = digest()
    os.utime(root / "app/bin", (1, 1))
    assert digest() == first  # times are not part of the key
    (root / "app/bin").write_bytes(b"other!")
    changed = digest()
    assert changed != first
    (root / "app/bin").chmod(0o700)
    assert digest() != changed
    os.link(root / "app/bin", root / "app/hard")
    with_link = digest()
    (root / "app/hard").unlink()
    (root / "app/hard").write_bytes(b"other!")  # same content, no longer a hardlink
    assert digest() != with_link
