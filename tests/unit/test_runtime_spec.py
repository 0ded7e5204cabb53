"""The OCI runtime spec we hand runc: namespaces, mounts, identity, environment, limits."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from dockyard.errors import ContainerError
from dockyard.oci.config import DEFAULT_PATH
from dockyard.runtime import HOST, NONE, ContainerConfig, Mount
from dockyard.runtime.spec import CAPABILITIES, build_spec
from dockyard.runtime.users import User

ETC = Path("/bundle")
ROOT = User()


def spec(user: User = ROOT, **kw) -> dict:
    config = ContainerConfig(args=kw.pop("args", ["sh"]), **kw)
    return build_spec(config, rootfs="/rootfs", user=user, hostname="box", etc_dir=ETC)


def namespaces(doc: dict) -> dict[str, str | None]:
    return {ns["type"]: ns.get("path") for ns in doc["linux"]["namespaces"]}


def mounts(doc: dict) -> dict[str, dict]:
    return {m["destination"]: m for m in doc["mounts"]}


def test_private_network_by_default_and_always_mount_pid_uts_ipc():
    assert namespaces(spec()) == {
        "mount": None,
        "pid": None,
        "uts": None,
        "ipc": None,
        "network": None,
    }
    assert namespaces(spec(network=NONE))["network"] is None


def test_host_network_has_no_network_namespace():
    assert "network" not in namespaces(spec(network=HOST))
    assert set(namespaces(spec(network=HOST))) == {"mount", "pid", "uts", "ipc"}


def test_dropped_capabilities_are_in_no_set():
    process = spec(drop_capabilities=["CAP_NET_RAW"])["process"]
    for kind in ("bounding", "effective", "permitted"):
        assert process["capabilities"][kind] == [c for c in CAPABILITIES if c != "CAP_NET_RAW"]


def test_joining_a_network_namespace_by_path():
    assert namespaces(spec(network="/run/pod/net"))["network"] == "/run/pod/net"
    with pytest.raises(ContainerError, match="netns path"):
        spec(network="bridge")


def test_proc_minimal_dev_and_sys():
    found = mounts(spec())
    assert found["/proc"]["type"] == "proc"
    assert found["/dev"]["type"] == "tmpfs"
    assert "newinstance" in found["/dev/pts"]["options"]  # ptmx via devpts
    assert found["/dev/shm"]["type"] == "tmpfs"
    assert "ro" in found["/sys"]["options"]
    order = [m["destination"] for m in spec()["mounts"]]
    assert order.index("/dev") < order.index("/dev/pts") < order.index("/dev/shm")


def test_etc_files_are_bound_from_the_bundle_never_written_to_the_rootfs():
    found = mounts(spec())
    for name in ("hosts", "resolv.conf", "hostname"):
        mount = found[f"/etc/{name}"]
        assert mount["type"] == "bind"
        assert mount["source"] == str(ETC / name)
    assert spec()["hostname"] == "box"


def test_extra_mounts_bind_ro_rw_and_tmpfs_with_size():
    doc = spec(
        mounts=[
            Mount.bind("/host/src", "/src", readonly=True),
            Mount.bind("/host/cache", "/root/.cache"),
            Mount.tmpfs("/scratch", size=1 << 20),
        ]
    )
    found = mounts(doc)
    assert found["/src"]["options"] == ["rbind", "rprivate", "ro"]
    assert found["/src"]["source"] == "/host/src"
    assert "ro" not in found["/root/.cache"]["options"]
    assert found["/scratch"]["type"] == "tmpfs"
    assert "size=1048576" in found["/scratch"]["options"]


def test_parents_are_mounted_before_children_and_user_mounts_replace_defaults():
    doc = spec(
        mounts=[
            Mount.bind("/host/hosts", "/etc/hosts"),
            Mount.bind("/host/data/sub", "/data/sub"),
            Mount.bind("/host/data", "/data"),
            Mount.tmpfs("/dev/shm", size=1 << 30),
        ]
    )
    order = [m["destination"] for m in doc["mounts"]]
    assert order.count("/etc/hosts") == 1 and order.count("/dev/shm") == 1
    assert mounts(doc)["/etc/hosts"]["source"] == "/host/hosts"
    assert "size=1073741824" in mounts(doc)["/dev/shm"]["options"]
    assert order.index("/data") < order.index("/data/sub")


def test_mount_paths_must_be_absolute():
    with pytest.raises(ContainerError, match="absolute"):
        spec(mounts=[Mount.bind("relative", "/x")])
    with pytest.raises(ContainerError, match="absolute"):
        spec(mounts=[Mount.tmpfs("x")])
    with pytest.raises(ContainerError, match="absolute"):
        spec(cwd="work")


def test_user_and_groups():
    doc = spec(User(uid=1000, gid=100, additional_gids=(10, 20), home="/home/u"))
    assert doc["process"]["user"]["uid"] == 1000
    assert doc["process"]["user"]["gid"] == 100
    assert doc["process"]["user"]["additionalGids"] == [10, 20]
    assert "HOME=/home/u" in doc["process"]["env"]


def test_environment_defaults_and_order():
    env = spec(env={"B": "2", "A": "1"})["process"]["env"]
    assert env[:2] == ["B=2", "A=1"]
    assert f"PATH={DEFAULT_PATH}" in env
    assert "HOME=/" in env
    assert not any(e.startswith("TERM=") for e in env)
    assert "TERM=xterm" in spec(terminal=True)["process"]["env"]
    env = spec(env={"PATH": "/x", "HOME": "/h"})["process"]["env"]
    assert "PATH=/x" in env and "HOME=/h" in env and len(env) == 2


@pytest.mark.parametrize("name", ["", "A=B", "NUL\0"])
def test_bad_environment_names(name):
    with pytest.raises(ContainerError):
        spec(env={name: "x"})


def test_docker_default_capabilities_never_inheritable_or_ambient():
    caps = spec()["process"]["capabilities"]
    assert set(caps) == {"bounding", "effective", "permitted"}
    assert caps["bounding"] == list(CAPABILITIES)
    assert len(CAPABILITIES) == 14 and "CAP_SYS_ADMIN" not in CAPABILITIES
    assert spec()["process"]["noNewPrivileges"] is False


def test_no_rlimits_so_none_above_the_current_hard_limits():
    # Without CAP_SYS_RESOURCE runc fails on any rlimit above our hard limit (PITFALLS):
    # the process inherits ours instead.
    assert "rlimits" not in spec()["process"]
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 0


def test_no_cgroup_path_and_a_device_cgroup_that_denies_by_default():
    linux = spec()["linux"]
    assert "cgroupsPath" not in linux
    assert linux["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}


def test_masked_and_readonly_paths_as_docker():
    linux = spec()["linux"]
    assert "/proc/kcore" in linux["maskedPaths"]
    assert "/sys/firmware" in linux["maskedPaths"]
    assert "/proc/sys" in linux["readonlyPaths"]
    assert "/proc/sysrq-trigger" in linux["readonlyPaths"]


def test_rootfs_args_and_cwd():
    doc = spec(args=["sh", "-c", "echo hi"], cwd="/work/../src/", readonly_rootfs=True)
    assert doc["root"] == {"path": "/rootfs", "readonly": True}
    assert doc["process"]["args"] == ["sh", "-c", "echo hi"]
    assert doc["process"]["cwd"] == "/src"
    assert doc["process"]["terminal"] is False
    with pytest.raises(ContainerError, match="no command"):
        spec(args=[])
