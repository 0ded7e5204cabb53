"""Working containers end to end: ``dockyard container create|run|mount|diff|commit|ls|
rm|prune`` and ``dockyard run`` without ``--rm``, as root with runc and overlayfs.

The committed image is checked against peers: pushed to a docker-registry, copied by
skopeo and unpacked by ``umoci raw unpack``, it is exactly the container's rootfs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dockyard.mountinfo import mount_points_under
from tests.conftest import need
from tests.support import working
from tests.support.containers import processes_running
from tests.support.registries import unique_repo
from tests.support.trees import assert_same_tree, change_merged
from tests.support.working import BASE, lines

clean_host = working.clean_host  # autouse; pytest finds the fixtures here by name
base_tree = working.base_tree
base = working.base

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


def config_of(dockyard, ref: str) -> dict:
    return json.loads(dockyard("inspect", ref).stdout)["Config"]


def layer_names(dockyard, ref: str, index: int) -> set[str]:
    """The paths in layer ``index`` of the stored image ``ref``, read from the store."""
    layer = json.loads(dockyard("inspect", ref).stdout)["Manifest"]["layers"][index]
    blob = dockyard.root / "blobs" / Path(*layer["digest"].split(":"))
    with tarfile.open(blob) as tar:
        return {name.rstrip("/") for name in tar.getnames()}


def test_create_run_diff_commit_and_commit_again(dockyard, base):
    assert lines(dockyard("container", "create", base)) == ["base-working-container"]
    name = "base-working-container"
    script = "echo new > /new; echo more >> /etc/keep; rm /usr/bin/b; rm -rf /var/cache"
    dockyard("container", "run", name, "--", "sh", "-c", script)
    assert lines(dockyard("container", "diff", name)) == [
        "C /etc",  # runc's mount stubs for /etc/hosts etc. copy it up, as in a RUN step
        "C /etc/keep",
        "A /new",
        "C /usr",
        "C /usr/bin",
        "D /usr/bin/b",
        "C /var",
        "D /var/cache",
    ]
    digest = lines(
        dockyard(
            "container", "commit", "-m", "by hand", "--change", 'CMD ["cat", "/new"]',
            "--change", "ENV MODE=dev", name, "localhost/t/app:1",
        )
    )[0]  # fmt: skip
    assert digest.startswith("sha256:")
    config = config_of(dockyard, "localhost/t/app:1")
    assert config["config"]["Cmd"] == ["cat", "/new"]
    assert "MODE=dev" in config["config"]["Env"]
    assert config["history"][-1]["comment"] == "by hand"
    assert dockyard("run", "--rm", "localhost/t/app:1", "sh", "-c", "cat /new").stdout == b"new\n"

    # The container now stands on app:1: nothing to commit, then only the later change.
    assert lines(dockyard("container", "diff", name)) == []
    refused = dockyard("container", "commit", name, "localhost/t/app:2", check=False)
    assert refused.returncode == 1
    assert refused.stderr.decode().splitlines() == [
        f"dockyard: error: container {name}: nothing to commit (no changes since "
        "localhost/t/app:1); --allow-empty commits an empty layer"
    ]
    dockyard("container", "run", name, "sh", "-c", "echo 2 > /second")
    dockyard("container", "commit", name, "localhost/t/app:2")
    one, two = (config_of(dockyard, f"localhost/t/app:{n}") for n in (1, 2))
    assert two["rootfs"]["diff_ids"][:-1] == one["rootfs"]["diff_ids"]
    assert two["config"]["Cmd"] == ["cat", "/new"]  # carried over
    out = dockyard("run", "--rm", "localhost/t/app:2", "sh", "-c", "cat /new /second")
    assert out.stdout == b"new\n2\n"
    assert layer_names(dockyard, "localhost/t/app:2", -1) == {"etc", "second"}  # + runc's stub dir

    # --allow-empty: one more layer, and history says so.
    dockyard("container", "commit", "--allow-empty", name, "localhost/t/app:3")
    three = config_of(dockyard, "localhost/t/app:3")
    assert len(three["rootfs"]["diff_ids"]) == len(two["rootfs"]["diff_ids"]) + 1


def test_a_run_that_changed_nothing_leaves_nothing_to_commit(dockyard, base):
    """runc's mount stubs (/etc/resolv.conf, /etc/hostname) make overlayfs copy /etc up;
    removed with its times restored, it is no change, as in docker's diff."""
    name = lines(dockyard("container", "create", base))[0]
    dockyard("container", "run", name, "true")
    assert lines(dockyard("container", "diff", name)) == []
    refused = dockyard("container", "commit", name, "localhost/t/none:1", check=False)
    assert refused.returncode == 1 and b"nothing to commit" in refused.stderr
    dockyard("container", "run", name, "sh", "-c", "chmod 750 /etc")  # metadata is a change
    assert lines(dockyard("container", "diff", name)) == ["C /etc"]
    dockyard("container", "commit", name, "localhost/t/none:1")
    out = dockyard("run", "--rm", "localhost/t/none:1", "sh", "-c", "stat -c %a /etc").stdout
    assert out == b"750\n"


def test_squash_makes_one_layer_of_the_whole_rootfs(dockyard, base):
    name = lines(dockyard("container", "create", "--name", "sq", base))[0]
    dockyard("container", "run", name, "sh", "-c", "echo s > /s; rm -rf /opt")
    dockyard("container", "commit", "--squash", name, "localhost/t/sq:1")
    config = config_of(dockyard, "localhost/t/sq:1")
    assert len(config["rootfs"]["diff_ids"]) == 1
    assert sum(not h.get("empty_layer") for h in config["history"]) == 1
    script = "cat /s; test -e /opt || echo no-opt; test -x /bin/busybox && echo busybox"
    out = dockyard("run", "--rm", "localhost/t/sq:1", "sh", "-c", script).stdout
    assert out == b"s\nno-opt\nbusybox\n"


def test_dockyard_run_keeps_a_listed_container(dockyard, base):
    result = dockyard("run", base, "sh", "-c", "echo kept > /kept; exit 3", check=False)
    assert result.returncode == 3
    (name,) = result.stderr.decode().split()
    (row,) = json.loads(dockyard("container", "ls", "--format", "json").stdout)
    assert (row["name"], row["image"], row["status"]) == (name, BASE, "exited (3)")
    assert row["command"] == ["sh", "-c", "echo kept > /kept; exit 3"]
    assert "A /kept" in lines(dockyard("container", "diff", name))
    table = lines(dockyard("container", "ls"))
    assert table[0].split() == ["NAME", "ID", "IMAGE", "CREATED", "STATUS"]
    assert table[1].startswith(name)
    named = dockyard("run", "--name", "mine", base, "true")
    assert named.stderr == b"mine\n"
    assert lines(dockyard("container", "rm", name, "mine")) == [name, "mine"]
    assert lines(dockyard("container", "ls", "-q")) == []


def test_survives_prune_and_rmi_of_its_image(dockyard, base, store_root):
    name = lines(dockyard("container", "create", base))[0]
    dockyard("container", "run", name, "sh", "-c", "echo x > /x")
    dockyard("rmi", base)
    assert "0 snapshots" in dockyard("prune").stdout.decode()
    assert dockyard("container", "run", name, "sh", "-c", "cat /x /etc/keep").stdout == (
        b"x\nunchanged\n"
    )
    dockyard("container", "commit", name, "localhost/t/after-prune:1")
    assert (
        b"unchanged"
        in dockyard("run", "--rm", "localhost/t/after-prune:1", "cat", "/etc/keep").stdout
    )
    # It now stands on the image it committed: untagged and pruned, that image's
    # snapshots stay too, and a later commit still has all it committed below it.
    dockyard("rmi", "localhost/t/after-prune:1")
    dockyard("prune")
    assert lines(dockyard("container", "diff", name)) == []
    dockyard("container", "run", name, "sh", "-c", "echo y > /y")
    dockyard("container", "commit", name, "localhost/t/after-prune:1")
    out = dockyard("run", "--rm", "localhost/t/after-prune:1", "cat", "/x", "/y", "/etc/keep")
    assert out.stdout == b"x\ny\nunchanged\n"
    # Removed, its pins go: now a prune takes the base's snapshots and blobs.
    dockyard("container", "rm", name)
    dockyard("rmi", "localhost/t/after-prune:1")
    dockyard("prune")
    assert list((store_root / "snapshots").glob("[0-9a-f]*")) == []


def test_mount_edit_from_the_host_then_commit(dockyard, base):
    name = lines(dockyard("container", "create", base))[0]
    merged = Path(lines(dockyard("container", "mount", name))[0])
    assert (merged / "etc/keep").read_text() == "unchanged\n"
    (merged / "from-host").write_text("edited on the host\n")
    assert lines(dockyard("container", "mount", name)) == [str(merged)]  # idempotent
    # A run in a mounted container uses that mount.
    out = dockyard("container", "run", name, "cat", "/from-host").stdout
    assert out == b"edited on the host\n"
    # Committing a mounted container: unmounted, frozen, mounted again on the new image.
    dockyard("container", "commit", name, "localhost/t/host:1")
    assert mount_points_under(merged) == [str(merged)]
    (merged / "second").write_text("2\n")
    assert lines(dockyard("container", "diff", name)) == ["A /second"]
    # In use on the host: unmount and commit refuse, and nothing is lost.
    busy = subprocess.Popen(["sleep", "600"], cwd=merged)
    try:
        for command in (["umount", name], ["commit", name, "localhost/t/host:2"]):
            result = dockyard("container", *command, check=False)
            assert result.returncode == 1
            assert len(result.stderr.splitlines()) == 1 and b"in use there" in result.stderr
    finally:
        busy.kill()
        busy.wait()
    dockyard("container", "umount", name)
    assert mount_points_under(merged) == []
    dockyard("container", "commit", name, "localhost/t/host:2")
    out = dockyard("run", "--rm", "localhost/t/host:2", "sh", "-c", "cat /from-host /second")
    assert out.stdout == b"edited on the host\n2\n"


def test_bad_input_is_one_line(dockyard, base):
    for args in (
        ["diff", "nope"],
        ["run", "nope", "true"],
        ["commit", "nope", "localhost/t/x:1"],
        ["rm", "nope"],
        ["mount", "nope"],
        ["umount", "nope"],
    ):
        result = dockyard("container", *args, check=False)
        assert (result.returncode, result.stderr) == (
            1,
            b"dockyard: error: no such container: nope\n",
        )
    dockyard("container", "create", "--name", "taken", base)
    dockyard("container", "run", "taken", "sh", "-c", "echo mine > /mine")
    result = dockyard("container", "create", "--name", "taken", base, check=False)
    assert (result.returncode, result.stderr) == (
        1,
        b"dockyard: error: the container name 'taken' is already in use\n",
    )
    for detach in ([], ["-d"]):  # dockyard run --name: the same line, exit 125
        result = dockyard("run", *detach, "--name", "taken", base, "true", check=False)
        assert (result.returncode, result.stderr) == (
            125,
            b"dockyard: error: the container name 'taken' is already in use\n",
        )
    result = dockyard("container", "commit", "taken", "Bad//Ref", check=False)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert b"invalid reference 'Bad//Ref'" in result.stderr
    # Nothing lost: the container in the way still has its change, and only it is listed.
    assert lines(dockyard("container", "diff", "taken")) == ["A /mine"]
    assert lines(dockyard("container", "ls", "-q")) == ["taken"]
    result = dockyard("container", "create", "--name", "../x", base, check=False)
    assert result.returncode == 1 and b"invalid container name '../x'" in result.stderr
    result = dockyard(
        "container", "commit", "-c", "RUN true", "taken", "localhost/t/x:1", check=False
    )
    assert result.returncode == 1 and b"RUN cannot be a --change" in result.stderr


def test_commit_during_a_run_refuses_and_a_killed_run_leaves_it_usable(dockyard, base):
    name = lines(dockyard("container", "create", base))[0]
    marker = "sleep 1733"
    run = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.main", "container", "run", name, "sh", "-c",
         f"echo written > /written; echo started; {marker}"],
        env={**os.environ, "DOCKYARD_ROOT": str(dockyard.root)},
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert run.stdout is not None and run.stdout.readline() == b"started\n"
        for args in (["commit", name, "localhost/t/x:1"], ["run", name, "true"], ["rm", name]):
            result = dockyard("container", *args, check=False)
            assert result.returncode == 1
            assert result.stderr.decode().splitlines() == [
                f"dockyard: error: container {name} is busy: another dockyard command (a "
                "`container run`?) is using it; try again when it has finished"
            ]
        assert (
            json.loads(dockyard("container", "ls", "--format", "json").stdout)[0]["status"]
            == "running"
        )
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert processes_running(marker)  # runc's container outlives a killed dockyard
    assert dockyard("container", "run", name, "cat", "/written").stdout == b"written\n"
    assert processes_running(marker) == []
    dockyard("container", "commit", name, "localhost/t/killed:1")
    out = dockyard("run", "--rm", "localhost/t/killed:1", "cat", "/written")
    assert out.stdout == b"written\n"


def test_prune_removes_idle_containers_only(dockyard, base):
    idle = lines(dockyard("container", "create", base))[0]
    mounted = lines(dockyard("container", "create", base))[0]
    merged = Path(lines(dockyard("container", "mount", mounted))[0])
    busy = subprocess.Popen(["sleep", "600"], cwd=merged)
    try:
        assert lines(dockyard("container", "prune")) == [idle]
        assert lines(dockyard("container", "ls", "-q")) == [mounted]
    finally:
        busy.kill()
        busy.wait()
    assert lines(dockyard("container", "prune")) == [mounted]


@pytest.mark.slow
def test_committed_image_unpacks_with_umoci_to_the_containers_rootfs(
    dockyard, base, docker_registry, tmp_path
):
    """Two commits (edits from the host, then from a run: additions, changes, deletions,
    a deleted dir, a dir turned file and a file turned dir and back, hardlinks,
    symlinks, modes, owners, xattrs), pushed, copied by skopeo, unpacked by umoci: the
    same tree as the container's, file for file."""
    need("skopeo", "umoci")
    name = lines(dockyard("container", "create", base))[0]
    merged = Path(lines(dockyard("container", "mount", name))[0])
    change_merged(merged)
    os.chown(merged / "etc/keep", 0, 0)
    (merged / "new/sub/file").chmod(0o640)
    os.chown(merged / "new/sub/file", 1234, 5678)
    (merged / "with-xattr").write_text("x\n")
    os.setxattr(merged / "with-xattr", "user.note", b"kept")
    dockyard("container", "umount", name)
    repo = unique_repo(docker_registry, "committed")
    dockyard("container", "commit", name, f"{repo}:1")
    script = (
        "rm /dir2file && mkdir /dir2file && echo back > /dir2file/child;"  # a file, a dir again
        "rm -r /file2dir && echo file-again > /file2dir;"
        "rm /new/hard; ln /etc/keep /etc/keep-link; rm -rf /opt; chmod 700 /home"
    )
    dockyard("container", "run", name, "sh", "-c", script)
    dockyard("container", "commit", name, f"{repo}:2")

    merged = Path(lines(dockyard("container", "mount", name))[0])
    truth = tmp_path / "truth"
    subprocess.run(["cp", "-a", f"{merged}/.", str(truth)], check=True)
    dockyard("container", "umount", name)
    dockyard("push", f"{repo}:2")
    layout, theirs = tmp_path / "layout", tmp_path / "theirs"
    subprocess.run(
        ["skopeo", "copy", "-q", "--src-tls-verify=false", "--format", "oci",
         f"docker://{repo}:2", f"oci:{layout}:latest"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["umoci", "raw", "unpack", "--image", f"{layout}:latest", str(theirs)],
        check=True,
        capture_output=True,
    )
    # runc's mount points (/dev, /proc, /sys exist in the image) and stubs are the same
    # on both sides; only directory times differ (a run touches them).
    assert_same_tree(truth, theirs, dir_mtimes=False)
    assert (theirs / "dir2file/child").read_text() == "back\n"
    assert (theirs / "file2dir").read_text() == "file-again\n"
    assert not (theirs / "opt").exists() and not (theirs / "var/cache").exists()
    assert os.stat(theirs / "etc/keep").st_ino == os.stat(theirs / "etc/keep-link").st_ino
    assert os.getxattr(theirs / "with-xattr", "user.note") == b"kept"
    shutil.rmtree(theirs)


def test_from_scratch_by_hand(dockyard, busybox_rootfs):
    name = lines(dockyard("container", "create", "scratch"))[0]
    assert name == "working-container"
    merged = Path(lines(dockyard("container", "mount", name))[0])
    shutil.copy2(busybox_rootfs / "bin/busybox", merged / "busybox")
    (merged / "d").mkdir()
    (merged / "d/f").write_text("hi\n")
    assert lines(dockyard("container", "diff", name)) == ["A /busybox", "A /d", "A /d/f"]
    dockyard("container", "umount", name)
    dockyard("container", "commit", "-c", 'ENTRYPOINT ["/busybox"]', name, "localhost/t/s:1")
    config = config_of(dockyard, "localhost/t/s:1")
    # scratch is BuildKit's empty image, whose config has WorkingDir "/"
    assert config["config"] == {"Entrypoint": ["/busybox"], "WorkingDir": "/"}
    assert len(config["rootfs"]["diff_ids"]) == len(config["history"]) == 1
    assert dockyard("run", "--rm", "localhost/t/s:1", "cat", "/d/f").stdout == b"hi\n"


def _commit_then_stall(root: Path, name: str, ref: str, renamed: bool, ready_fd: int) -> None:
    """``container commit`` in this (forked) process, stopping for good at the freeze:
    before the upper dir is renamed into a snapshot, or just after."""
    import time

    from dockyard.cli.main import cli
    from dockyard.runtime.snapshots import Snapshots

    freeze = Snapshots.commit

    def stall(self, upper, chain):
        if renamed:
            freeze(self, upper, chain)
        os.write(ready_fd, b"x")
        time.sleep(3600)

    Snapshots.commit = stall  # type: ignore[method-assign]
    os.environ["DOCKYARD_ROOT"] = str(root)
    cli.main(["container", "commit", name, ref], standalone_mode=False)


@pytest.mark.parametrize("renamed", [False, True], ids=["before-freeze", "after-freeze"])
def test_a_killed_commit_is_finished_by_the_next_command(dockyard, base, renamed):
    from tests.killing import killed_when_ready

    name = lines(dockyard("container", "create", base))[0]
    dockyard("container", "run", name, "sh", "-c", "echo 1 > /one")
    with killed_when_ready(_commit_then_stall, dockyard.root, name, "localhost/t/k:1", renamed):
        pass
    assert lines(dockyard("container", "diff", name)) == []  # the commit was finished
    dockyard("container", "run", name, "sh", "-c", "echo 2 > /two")
    dockyard("container", "commit", name, "localhost/t/k:2")
    assert layer_names(dockyard, "localhost/t/k:2", -1) == {"etc", "two"}
    out = dockyard("run", "--rm", "localhost/t/k:2", "sh", "-c", "cat /one /two")
    assert out.stdout == b"1\n2\n"


def test_run_with_a_terminal_keeps_what_it_wrote(dockyard, base):
    """``container run -it`` on a pseudo-terminal, as a user types at it."""
    import pty

    name = lines(dockyard("container", "create", base))[0]
    controller, terminal = pty.openpty()
    script = "test -t 0 && test -t 1 && echo tty > /typed; exit 4"
    child = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.main", "container", "run", "-it", name,
         "sh", "-c", script],
        stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True,
        env={**os.environ, "DOCKYARD_ROOT": str(dockyard.root)},
    )  # fmt: skip
    os.close(terminal)
    with contextlib.suppress(OSError):  # EIO: every writer has gone
        while os.read(controller, 4096):
            pass
    os.close(controller)
    assert child.wait(timeout=60) == 4
    assert dockyard("container", "run", name, "cat", "/typed").stdout == b"tty\n"
