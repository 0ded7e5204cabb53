"""Paths resolved inside a rootfs, and the mount stubs runc would leave in it."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from dockyard.runtime.inroot import (
    MountStubs,
    NotRegularFile,
    open_by_walking,
    open_in_root,
    open_regular,
    read_file,
    read_regular,
    resolve,
)
from tests.support.renames import renaming


@pytest.fixture
def rootfs(tmp_path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "private/etc").mkdir(parents=True)
    (root / "var").symlink_to("/private")  # absolute: means <rootfs>/private
    (root / "up").symlink_to("../../../..")  # climbs: stops at the rootfs
    (root / "etc/resolv.conf").symlink_to("../run/resolv.conf")  # dangling
    return root


def resolved(root: Path, path: str) -> tuple[str, list[str]]:
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        return resolve(fd, path)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/etc", ("etc", [])),
        ("/etc/hosts", ("etc", ["hosts"])),
        ("/var/etc/hosts", ("private/etc", ["hosts"])),
        ("/up/etc", ("etc", [])),
        ("/up/../../etc/x/y", ("etc", ["x", "y"])),
        ("/etc/resolv.conf", ("", ["run", "resolv.conf"])),  # what runc would create
        ("/new/a/../b", ("", ["new", "b"])),
        ("/", ("", [])),
    ],
)
def test_resolve_like_securejoin(rootfs, path, expected):
    assert resolved(rootfs, path) == expected


def test_symlink_loops_are_refused(rootfs):
    from dockyard.errors import ContainerError

    (rootfs / "loop").symlink_to("loop")
    with pytest.raises(ContainerError, match="symlinks"):
        resolved(rootfs, "/loop/x")


def test_read_file(rootfs):
    (rootfs / "private/etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    assert read_file(rootfs, "/var/etc/passwd") == b"root:x:0:0::/root:/bin/sh\n"
    assert read_file(rootfs, "/etc/passwd") is None
    assert read_file(rootfs, "/etc") is None  # not a regular file


def test_stubs_are_removed_if_still_empty_and_anchor_times_come_back(rootfs):
    os.utime(rootfs / "etc", ns=(1_000_000_000, 2_000_000_000))
    (rootfs / "proc").mkdir()
    stubs = MountStubs.find(rootfs, ["/etc/hosts", "/proc", "/data/cache", "/work/src"])
    assert stubs.paths == ["etc/hosts", "data", "data/cache", "work", "work/src"]
    # runc creates them; the container writes into one of them
    (rootfs / "etc/hosts").touch()
    (rootfs / "data/cache").mkdir(parents=True)
    (rootfs / "work/src").mkdir(parents=True)
    (rootfs / "work/src/output").write_text("kept")
    stubs.remove()
    assert not (rootfs / "etc/hosts").exists()
    assert not (rootfs / "data").exists()
    assert (rootfs / "work/src/output").read_text() == "kept"
    assert (rootfs / "etc").stat().st_mtime_ns == 2_000_000_000


def test_stubs_never_leave_the_rootfs(tmp_path, rootfs):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hosts").touch()  # an empty file a naive cleanup would delete
    stubs = MountStubs.find(rootfs, ["/etc/hosts"])
    # the container replaced /etc with a symlink to the host's directory
    (rootfs / "etc").rename(rootfs / "etc.old")
    (rootfs / "etc").symlink_to(outside)
    stubs.remove()
    assert (outside / "hosts").exists()


def test_open_regular_confines_as_asked(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d/f").write_text("inside\n")
    (tmp_path / "out").symlink_to("/d/f")  # inside the root: d/f; beneath: out of it
    os.mkfifo(tmp_path / "fifo")
    root = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = open_regular(root, "out")
        with os.fdopen(fd, "rb") as f:
            assert f.read() == b"inside\n"
            assert os.get_blocking(fd)
        with pytest.raises(OSError) as raised:
            open_regular(root, "out", beneath=True)
        assert raised.value.errno == errno.EXDEV
        with pytest.raises(NotRegularFile):
            open_regular(root, "fifo")  # and did not block
        with pytest.raises(NotRegularFile):
            open_regular(root, "d")
        assert read_regular(root, "d") is None
        assert read_regular(root, "missing") is None
        with pytest.raises(OSError) as raised:
            read_regular(root, "d/f", limit=3)
        assert raised.value.errno == errno.EFBIG
    finally:
        os.close(root)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_device_node_is_never_opened(tmp_path):
    # A hostile step can mknod its report file. Major 240 is for local/experimental
    # use: no driver here, so an open would fail with ENXIO from the kernel; a refusal
    # without opening says "not a regular file".
    os.mknod(tmp_path / "report.xml", 0o600 | stat.S_IFCHR, os.makedev(240, 0))
    with pytest.raises(OSError) as opened:
        os.open(tmp_path / "report.xml", os.O_RDONLY | os.O_NONBLOCK)
    assert opened.value.errno == errno.ENXIO  # what opening it would do
    root = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(NotRegularFile):
            open_regular(root, "report.xml")
        assert read_regular(root, "report.xml") is None
    finally:
        os.close(root)


def test_a_concurrent_rename_does_not_make_a_file_missing(tmp_path):
    # openat2 says EAGAIN to a scoped lookup through ".." whenever a rename anywhere
    # raced it (about 1 in 200 here with a renamer running, far more on a loaded
    # machine and a long path): a few tries, then the walk, which renames cannot spoil.
    (tmp_path / "d").mkdir()
    (tmp_path / "key").write_text("k")
    root = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        with renaming(tmp_path / "renames"):
            for _ in range(5000):
                os.close(open_regular(root, "d/../key", beneath=True))
                os.close(open_regular(root, "d/../key"))
    finally:
        os.close(root)


@pytest.fixture
def hostile(tmp_path) -> Path:
    """A tree with every way out: absolute and climbing symlinks, loops, dangling links."""
    root = tmp_path / "root"
    (root / "a/b").mkdir(parents=True)
    (root / "a/b/file").write_text("f")
    (tmp_path / "secret").write_text("host")
    (root / "abs").symlink_to("/a/b")
    (root / "climb").symlink_to("../../../a")
    (root / "a/up").symlink_to("..")
    (root / "a/b/host").symlink_to("../../../secret")
    (root / "loop").symlink_to("loop")
    (root / "dangling").symlink_to("nowhere/x")
    (root / "filelink").symlink_to("a/b/file")
    os.mkfifo(root / "fifo")
    return root


WALKED = [
    ".",
    "a",
    "a/b/file",
    "abs/file",
    "climb/b/file",
    "a/up/a/b/file",
    "a/b/host",
    "../../a/b/file",
    "loop",
    "dangling",
    "filelink",
    "filelink/",
    "a/b/file/",
    "a/b/file/x",
    "abs/../abs/./file",
    "a/up/up/up/abs",
    "missing",
    "a/missing/..",
    "fifo",
    "/abs",
    "",
]


def outcome(open_, root: int, path: str, flags: int, beneath: bool) -> tuple[int, int] | int:
    """The inode opened, or the errno."""
    try:
        fd = open_(root, path, flags, beneath=beneath)
    except OSError as e:
        return e.errno
    try:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino
    finally:
        os.close(fd)


@pytest.mark.parametrize("beneath", [False, True])
@pytest.mark.parametrize(
    "flags",
    [
        os.O_PATH,
        os.O_PATH | os.O_NOFOLLOW,
        os.O_PATH | os.O_DIRECTORY,
        os.O_RDONLY | os.O_NONBLOCK,
        os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK,
        os.O_RDONLY | os.O_DIRECTORY,
    ],
)
def test_the_walk_opens_what_openat2_opens(hostile, flags, beneath):
    root = os.open(hostile, os.O_PATH | os.O_DIRECTORY)
    try:
        for path in WALKED:
            expected = outcome(open_in_root, root, path, flags, beneath)
            assert outcome(open_by_walking, root, path, flags, beneath) == expected, path
    finally:
        os.close(root)
