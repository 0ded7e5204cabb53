"""The copier's data path: exact bytes across filesystems, and the rootfs digest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
