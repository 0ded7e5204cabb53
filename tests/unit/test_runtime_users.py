"""USER resolution against a rootfs's passwd and group files, with runc's rules and
containerd's (the primary gid is always a supplementary group, as BuildKit's
testUserAdditionalGids expects)."""

from __future__ import annotations

import os

import pytest

from dockyard.errors import ContainerError
from dockyard.runtime.users import User, resolve_in_rootfs, resolve_user

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
builder:x:1000:1000:Builder:/home/builder:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
+nis
broken:x:notanumber:0::/:
"""

GROUP = """\
root:x:0:
wheel:x:10:root,builder
docker:x:999:builder
builder:x:1000:
nogroup:x:65534:
"""


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", User(0, 0, (0, 10), "/root")),
        ("root", User(0, 0, (0, 10), "/root")),
        ("0", User(0, 0, (0, 10), "/root")),
        ("nobody", User(65534, 65534, (65534,), "/nonexistent")),
        ("65534", User(65534, 65534, (65534,), "/nonexistent")),
        ("builder", User(1000, 1000, (1000, 10, 999), "/home/builder")),
        ("builder:docker", User(1000, 999, (999,), "/home/builder")),  # explicit group: only it
        ("builder:0", User(1000, 0, (0,), "/home/builder")),
        ("1000:4242", User(1000, 4242, (4242,), "/home/builder")),
        ("4242", User(4242, 0, (0,), "/")),  # numeric, not in passwd: gid 0, home /
        ("4242:nogroup", User(4242, 65534, (65534,), "/")),
        ("01000", User(1000, 1000, (1000, 10, 999), "/home/builder")),  # numeric is always an id
    ],
)
def test_docker_rules(spec, expected):
    assert resolve_user(spec, PASSWD, GROUP) == expected


def test_unknown_names_fail():
    with pytest.raises(ContainerError, match="unable to find user ghost"):
        resolve_user("ghost", PASSWD, GROUP)
    with pytest.raises(ContainerError, match="unable to find group ghosts"):
        resolve_user("builder:ghosts", PASSWD, GROUP)
    with pytest.raises(ContainerError, match="broken"):
        resolve_user("broken", PASSWD, GROUP)  # its line is garbage, so skipped


def test_out_of_range_ids_fail():
    with pytest.raises(ContainerError, match="out of range"):
        resolve_user("4294967296", PASSWD, GROUP)
    with pytest.raises(ContainerError, match="out of range"):
        resolve_user("0:4294967296", PASSWD, GROUP)


def test_without_passwd_or_group_files():
    assert resolve_user("", None, None) == User(0, 0, (0,), "/")
    assert resolve_user("1000:1000", None, None) == User(1000, 1000, (1000,), "/")
    with pytest.raises(ContainerError):
        resolve_user("builder", None, None)


def test_additional_groups_by_name_or_id():
    user = resolve_user("nobody", PASSWD, GROUP, ["docker", "10", "31337", "docker"])
    assert user.additional_gids == (65534, 999, 10, 31337)
    assert resolve_user("builder", PASSWD, GROUP, ["wheel"]).additional_gids == (1000, 10, 999)
    with pytest.raises(ContainerError, match="unable to find group ghosts"):
        resolve_user("", PASSWD, GROUP, ["ghosts"])


def test_reads_the_rootfs_files(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(PASSWD)
    (tmp_path / "etc/group").write_text(GROUP)
    assert resolve_in_rootfs(tmp_path, "builder").additional_gids == (1000, 10, 999)


def test_symlinked_passwd_resolves_inside_the_rootfs_never_on_the_host(tmp_path):
    rootfs = tmp_path / "rootfs"
    host = tmp_path / "host-etc"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "real").mkdir()
    host.mkdir()
    (host / "passwd").write_text("intruder:x:4242:4242::/stolen:/bin/sh\n")
    (rootfs / "real/passwd").write_text("intruder:x:7:7::/inside:/bin/sh\n")
    # An absolute symlink to the host file's path means <rootfs>/<that path>...
    (rootfs / "etc/passwd").symlink_to(host / "passwd")
    with pytest.raises(ContainerError, match="unable to find user intruder"):
        resolve_in_rootfs(rootfs, "intruder")
    # ...and one climbing out with .. stops at the rootfs.
    (rootfs / "etc/passwd").unlink()
    (rootfs / "etc/passwd").symlink_to("../../../../../../real/passwd")
    assert resolve_in_rootfs(rootfs, "intruder") == User(7, 7, (7,), "/inside")


def test_a_fifo_as_passwd_does_not_hang(tmp_path):
    (tmp_path / "etc").mkdir()
    os.mkfifo(tmp_path / "etc/passwd")
    assert resolve_in_rootfs(tmp_path, "") == User(0, 0, (0,), "/")
