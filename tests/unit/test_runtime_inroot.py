"""Paths resolved inside a rootfs, and the mount stubs runc would leave in it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.runtime.inroot import MountStubs, read_file, resolve


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
