"""Containers under real runc on real overlays: isolation, identity, mounts, networks,
output, timeouts, and a clean host after every test (no mounts, containers, processes).

Its fixtures (a store holding the busybox image, the leak check) are in
:mod:`tests.support.containers`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.errors import ContainerError
from dockyard.runtime import (
    HOST,
    Container,
    ContainerConfig,
    ContainerTimeout,
    Mount,
    Snapshots,
    netns,
    overlay_rootfs,
    run,
)
from dockyard.runtime.container import (
    BUNDLES_DIR,
    PID_FILE,
    kill_all,
    reap_orphans,
    signal_first,
)
from tests.killing import killed_when_ready
from tests.support.containers import (
    Image,
    Output,
    busybox_image,
    no_leaks,
    processes_running,
    runc_containers,
)
from tests.support.waiting import PATIENCE, wait_until

SHARED_FIXTURES = (busybox_image, no_leaks)  # pytest finds them here by name

pytestmark = pytest.mark.e2e


@pytest.fixture
def rootfs(busybox_image) -> Iterator[Path]:
    """A fresh overlay of the busybox snapshots; yields the merged dir."""
    with (
        Snapshots(busybox_image.store).scratch() as scratch,
        overlay_rootfs(busybox_image.lowers, scratch) as fs,
    ):
        yield fs.merged


def sh(script: str, **kw) -> ContainerConfig:
    return ContainerConfig(args=["sh", "-c", script], **kw)


def run_sh(rootfs: Path, image: Image, script: str, **kw) -> tuple[int, Output]:
    out = Output()
    timeout = kw.pop("timeout", 60)
    code = run(rootfs, sh(script, **kw), root=image.store.root, on_output=out, timeout=timeout)
    return code, out


# -- processes and output -------------------------------------------------------------


def test_output_and_exit_code(rootfs, busybox_image):
    code, out = run_sh(rootfs, busybox_image, "echo hi; echo oops >&2; exit 3")
    assert code == 3
    assert out.stdout == "hi\n"
    assert out.stderr == "oops\n"


def test_output_to_file_descriptors(rootfs, busybox_image, tmp_path):
    with open(tmp_path / "out", "wb") as stdout:
        code = run(rootfs, sh("echo to-a-file"), root=busybox_image.store.root, stdout=stdout)
    assert code == 0
    assert (tmp_path / "out").read_text() == "to-a-file\n"


def test_stdin(rootfs, busybox_image, tmp_path):
    (tmp_path / "in").write_text("fed\n")
    out = Output()
    with open(tmp_path / "in", "rb") as stdin:
        run(rootfs, sh("cat"), root=busybox_image.store.root, stdin=stdin, on_output=out)
    assert out.stdout == "fed\n"
    _, out = run_sh(rootfs, busybox_image, "cat")  # no stdin given: /dev/null
    assert out.stdout == ""


def test_pid_namespace(rootfs, busybox_image):
    code, out = run_sh(rootfs, busybox_image, "cat /proc/1/cmdline | tr '\\0' ' '; echo; ps -o pid")
    assert code == 0
    first, *rest = out.stdout.splitlines()
    assert first.startswith("sh -c cat /proc/1/cmdline")
    assert len(rest) <= 4  # header, sh, ps (and maybe tr): nothing of the host


def test_hostname_and_etc_files(rootfs, busybox_image):
    script = "hostname; cat /etc/hostname; grep -c box /etc/hosts; test -f /etc/resolv.conf"
    code, out = run_sh(rootfs, busybox_image, script, hostname="box", hosts={"db": "127.0.0.1"})
    assert code == 0
    assert out.stdout.split() == ["box", "box", "1"]
    code, out = run_sh(rootfs, busybox_image, "grep -w db /etc/hosts", hosts={"db": "127.0.0.1"})
    assert out.stdout == "127.0.0.1\tdb\n"


def test_default_hostname_is_the_short_container_id(rootfs, busybox_image):
    out = Output()
    with Container(rootfs, sh("hostname"), root=busybox_image.store.root, on_output=out) as c:
        assert c.wait() == 0
    assert out.stdout.strip() == c.id.rpartition("-")[2]


def test_minimal_dev(rootfs, busybox_image):
    script = "ls /dev; echo x > /dev/null; head -c 4 /dev/urandom | wc -c; test -c /dev/ptmx"
    code, out = run_sh(rootfs, busybox_image, script)
    assert code == 0, out.stderr
    names = set(out.stdout.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"} <= names
    assert "4" in names
    assert "sda" not in names and "kmsg" not in names


def test_devices_outside_the_allow_list_are_denied(rootfs, busybox_image):
    code, out = run_sh(rootfs, busybox_image, "mknod /tmp/mem c 1 1 && head -c1 /tmp/mem")
    assert code != 0
    assert "not permitted" in out.stderr


def test_masked_and_readonly_paths(rootfs, busybox_image):
    code, out = run_sh(
        rootfs, busybox_image, "wc -c < /proc/timer_list; echo 1 > /proc/sys/vm/drop_caches"
    )
    assert out.stdout.strip() == "0"
    assert code != 0  # /proc/sys is read-only


def test_seccomp_refuses_new_namespaces_but_not_forks(rootfs, busybox_image):
    """A user namespace needs no capability (runc without our filter makes one here):
    the filter refuses it, and a network namespace, while plain forks work."""
    code, out = run_sh(
        rootfs,
        busybox_image,
        "unshare -U true; echo user=$?; unshare -n true; echo net=$?; (exit 3); echo fork=$?",
    )
    assert code == 0
    assert out.stdout == "user=1\nnet=1\nfork=3\n"
    assert out.stderr.count("Operation not permitted") == 2


def test_runc_failure_is_an_error_not_an_exit_code(rootfs, busybox_image):
    with pytest.raises(ContainerError, match="no such file"):
        run(rootfs, ContainerConfig(["/no/such/binary"]), root=busybox_image.store.root)


# -- identity and filesystem ------------------------------------------------------------


def test_user_by_name_and_number(rootfs, busybox_image):
    code, out = run_sh(rootfs, busybox_image, "id -u; id -g; echo $HOME", user="nobody")
    assert (code, out.stdout.split()) == (0, ["65534", "65534", "/"])
    code, out = run_sh(rootfs, busybox_image, "id -u; id -g; id -G", user="1234:5678", groups=["0"])
    assert out.stdout.split() == ["1234", "5678", "5678", "0"]


def test_non_root_users_have_no_capabilities(rootfs, busybox_image):
    script = "grep CapEff /proc/self/status"
    _, out = run_sh(rootfs, busybox_image, script, user="nobody")
    assert out.stdout.split()[1] == "0000000000000000"
    _, out = run_sh(rootfs, busybox_image, script)
    assert out.stdout.split()[1] != "0000000000000000"


def test_workdir_is_created(rootfs, busybox_image):
    code, out = run_sh(rootfs, busybox_image, "pwd", cwd="/new/work/dir")
    assert (code, out.stdout) == (0, "/new/work/dir\n")
    assert (rootfs / "new/work/dir").is_dir()


def test_env(rootfs, busybox_image):
    _, out = run_sh(rootfs, busybox_image, 'echo "$GREETING|$PATH|$HOME"', env={"GREETING": "a b"})
    assert out.stdout == "a b|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|/root\n"


def test_mount_points_are_not_left_in_the_rootfs(busybox_image, tmp_path):
    host = tmp_path / "src"
    host.mkdir()
    with (
        Snapshots(busybox_image.store).scratch() as scratch,
        overlay_rootfs(busybox_image.lowers, scratch) as fs,
    ):
        mounts = [Mount.bind(str(host), "/mnt/src"), Mount.tmpfs("/scratch")]
        code, _ = run_sh(fs.merged, busybox_image, "touch /keep", mounts=mounts)
        assert code == 0
        changed = sorted(
            str(Path(d, n).relative_to(fs.upper))
            for d, dirs, files in os.walk(fs.upper)
            for n in dirs + files
        )
    # /etc is copied up (its mtime restored); hosts, resolv.conf, hostname, /mnt and
    # /scratch, which runc created as mount points, are gone.
    assert changed == ["etc", "keep"]


def test_bind_mounts_read_only_and_read_write(rootfs, busybox_image, tmp_path):
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "in").write_text("input\n")
    mounts = [Mount.bind(str(ro), "/ro", readonly=True), Mount.bind(str(rw), "/rw")]
    code, out = run_sh(rootfs, busybox_image, "cat /ro/in; echo out > /rw/out", mounts=mounts)
    assert (code, out.stdout) == (0, "input\n")
    assert (rw / "out").read_text() == "out\n"
    code, out = run_sh(rootfs, busybox_image, "echo x > /ro/new", mounts=mounts)
    assert code != 0
    assert "Read-only" in out.stderr
    assert not (ro / "new").exists()


def test_tmpfs_with_a_size(rootfs, busybox_image):
    mounts = [Mount.tmpfs("/scratch", size=1 << 20)]
    script = "grep ' /scratch ' /proc/mounts; dd if=/dev/zero of=/scratch/f bs=1024 count=2048"
    code, out = run_sh(rootfs, busybox_image, script, mounts=mounts)
    assert out.stdout.startswith("tmpfs /scratch tmpfs")
    assert code != 0 and "No space left" in out.stderr
    assert not (rootfs / "scratch/f").exists()


def test_writes_land_in_the_upper_dir_only(busybox_image):
    lower_files = {p.name for p in busybox_image.lowers[0].iterdir()}
    with (
        Snapshots(busybox_image.store).scratch() as scratch,
        overlay_rootfs(busybox_image.lowers, scratch) as fs,
    ):
        code, _ = run_sh(fs.merged, busybox_image, "echo data > /tmp/new; rm /bin/cat")
        assert code == 0
        assert (fs.upper / "tmp/new").read_text() == "data\n"
        whiteout = (fs.upper / "bin/cat").lstat()
        assert (whiteout.st_mode & 0o170000, whiteout.st_rdev) == (0o020000, 0)
    assert {p.name for p in busybox_image.lowers[0].iterdir()} == lower_files
    assert not (busybox_image.lowers[0] / "tmp/new").exists()
    assert (busybox_image.lowers[0] / "bin/cat").is_symlink()


# -- networks ---------------------------------------------------------------------------


def test_network_none_has_only_loopback(rootfs, busybox_image):
    code, out = run_sh(rootfs, busybox_image, "ls /sys/class/net; cat /sys/class/net/lo/operstate")
    assert code == 0
    assert out.stdout.split()[0] == "lo" and len(out.stdout.split()) == 2


def test_host_network_sees_the_host_interfaces(rootfs, busybox_image):
    code, out = run_sh(rootfs, busybox_image, "ls /sys/class/net", network=HOST)
    assert code == 0
    assert sorted(out.stdout.split()) == sorted(os.listdir("/sys/class/net"))


def test_containers_in_one_network_namespace_talk_over_loopback(busybox_image, tmp_path):
    server_script = (
        "mkdir -p /www && echo pong > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"
    )
    client_script = (
        "for i in $(seq 100); do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.1; done;"
        " exit 1"
    )
    snapshots = Snapshots(busybox_image.store)
    root = busybox_image.store.root
    with (
        netns(tmp_path / "pod-net") as net,
        snapshots.scratch() as s1,
        snapshots.scratch() as s2,
        overlay_rootfs(busybox_image.lowers, s1) as server_fs,
        overlay_rootfs(busybox_image.lowers, s2) as client_fs,
        Container(server_fs.merged, sh(server_script, network=str(net)), root=root) as server,
    ):
        code, out = run_sh(client_fs.merged, busybox_image, client_script, network=str(net))
        assert (code, out.stdout) == (0, "pong\n")
        assert server.pid is not None
        # Not reachable from a container of another network namespace.
        code, _ = run_sh(
            client_fs.merged, busybox_image, "wget -q -T 1 -O - http://127.0.0.1:8080/"
        )
        assert code != 0
    assert not (tmp_path / "pod-net").exists()


# -- stopping ---------------------------------------------------------------------------


def test_timeout_kills_the_whole_tree(rootfs, busybox_image):
    marker = "sleep 1717"
    started = time.monotonic()
    with pytest.raises(ContainerTimeout):
        run_sh(rootfs, busybox_image, f"{marker} & {marker}; echo never", timeout=1)
    assert time.monotonic() - started < 20
    assert processes_running(marker) == []


def test_the_timeout_holds_after_the_output_has_ended(rootfs, busybox_image):
    marker = "sleep 1720"
    with pytest.raises(ContainerTimeout):
        run_sh(rootfs, busybox_image, f"echo hi; exec >/dev/null 2>&1; {marker}", timeout=1)
    assert processes_running(marker) == []


def test_a_service_container_is_killed_on_close(rootfs, busybox_image):
    marker = "sleep 1718"
    with Container(rootfs, sh(f"{marker} & {marker}"), root=busybox_image.store.root) as c:
        wait_until(lambda: len(processes_running(marker)) == 2, "both sleeps to run")
    assert processes_running(marker) == []
    assert c.pid is not None


def test_a_failing_output_callback_stops_the_container(rootfs, busybox_image):
    def explode(stream: str, data: bytes) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(
            rootfs, sh("echo hi; exec sleep 1719"), root=busybox_image.store.root, on_output=explode
        )
    assert processes_running("sleep 1719") == []


def test_ctrl_c_cleans_up_everything(busybox_image, tmp_path):
    """SIGINT (twice) to a process running a container: it exits, and leaves nothing."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from dockyard.runtime import ContainerConfig, Snapshots, overlay_rootfs, run
        from dockyard.store import Store

        store = Store(Path({str(busybox_image.store.root)!r}))
        lowers = [Path(p) for p in {[str(p) for p in busybox_image.lowers]!r}]
        with Snapshots(store).scratch() as scratch, overlay_rootfs(lowers, scratch) as fs:
            config = ContainerConfig(["sh", "-c", "echo started; sleep 1720 & sleep 1720"])
            run(fs.merged, config, root=store.root)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"started\n"
    child.send_signal(signal.SIGINT)
    threading.Timer(0.05, lambda: child.poll() is None and child.send_signal(signal.SIGINT)).start()
    _, stderr = child.communicate(timeout=30)
    assert child.returncode != 0
    assert b"KeyboardInterrupt" in stderr
    assert processes_running("sleep 1720") == []


def _runc_status(container: Container) -> str:
    state = subprocess.run(
        ["runc", "--root", str(container.runc_root), "state", container.id],
        capture_output=True,
        text=True,
    )
    return json.loads(state.stdout)["status"] if state.returncode == 0 else "gone"


def _until(condition: Callable[[], bool], timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_wait_started_returns_once_it_runs_or_says_why_it_cannot(rootfs, busybox_image):
    root = busybox_image.store.root
    with Container(rootfs, sh("exec sleep 1724"), root=root) as running:
        running.wait_started()
        assert _runc_status(running) == "running"
        running.kill()
    with Container(rootfs, sh("exit 3"), root=root) as ended:
        ended.wait_started()  # it ended: wait tells how
        assert ended.wait() == 3
    broken = Container(rootfs, ContainerConfig(["/no/such/command"]), root=root)
    with broken, pytest.raises(ContainerError, match="no such file"):
        broken.wait_started()


def test_a_signal_goes_to_the_first_process_only_if_it_catches_it(rootfs, busybox_image):
    out = Output()
    script = "trap 'echo got it; exit 7' TERM; echo up; while :; do sleep 0.1; done"
    with Container(rootfs, sh(script), root=busybox_image.store.root, on_output=out) as c:
        _until(lambda: out.stdout == "up\n")  # the trap is set
        assert signal_first(c.runc_root, c.id, signal.SIGTERM)
        assert c.wait(30) == 7
        assert out.stdout == "up\ngot it\n"
        assert not signal_first(c.runc_root, c.id, signal.SIGTERM)  # it has ended


def test_send_signal_finds_the_first_process_without_asking_runc(rootfs, busybox_image):
    out = Output()
    script = "trap 'echo got it; exit 7' TERM; echo up; while :; do sleep 0.1; done"
    with Container(rootfs, sh(script), root=busybox_image.store.root, on_output=out) as c:
        _until(lambda: out.stdout == "up\n")
        assert (c.bundle / PID_FILE).exists()  # runc's --pid-file: no ``runc state`` needed
        assert c.send_signal(signal.SIGTERM)
        assert c.wait(30) == 7
        assert not c.send_signal(signal.SIGTERM)  # it has ended
    with Container(
        rootfs,
        sh("echo up; exec sleep 1725"),
        root=busybox_image.store.root,
        on_output=(out := Output()),
    ) as c:
        _until(lambda: out.stdout == "up\n")
        assert not c.send_signal(signal.SIGTERM)  # an init without a handler drops it
        assert _runc_status(c) == "running"


def test_kill_all_ends_an_init_that_ignores_signals_and_its_children(rootfs, busybox_image):
    marker = "sleep 1725"
    with Container(rootfs, sh(f"{marker} & exec {marker}"), root=busybox_image.store.root) as c:
        _until(lambda: len(processes_running(marker)) == 2)
        assert not signal_first(c.runc_root, c.id, signal.SIGTERM)  # an init drops it
        assert _runc_status(c) == "running"
        kill_all(c.runc_root, c.id)
        assert c.wait(30) == 137
    assert processes_running(marker) == []


def test_a_container_cannot_be_started_twice(rootfs, busybox_image):
    container = Container(rootfs, sh("true"), root=busybox_image.store.root)
    with container:
        assert container.wait() == 0
        with pytest.raises(ContainerError, match="already started"):
            container.start()
    container.close()  # idempotent


def test_a_killed_runc_leaves_nothing_running(rootfs, busybox_image):
    """If runc itself dies, its container lives on: close() still finds and ends it."""
    marker = "sleep 1721"
    out = Output()
    container = Container(
        rootfs, sh(f"echo up; {marker} & {marker}"), root=busybox_image.store.root, on_output=out
    )
    with container:
        wait_until(lambda: len(processes_running(marker)) == 2, "both sleeps to run")
        assert container.pid is not None
        os.kill(container.pid, signal.SIGKILL)
        time.sleep(0.2)
        assert len(processes_running(marker)) == 2  # orphaned, still running
    assert processes_running(marker) == []
    assert out.stdout == "up\n"


def _start_then_wait(rootfs: Path, root: Path, marker: str, ready_fd: int) -> None:
    """In a child: start a container, say so once it runs, wait to be killed."""
    container = Container(rootfs, sh(f"{marker} & {marker}"), root=root)
    container.start()
    wait_until(lambda: len(processes_running(marker)) == 2, "both sleeps to run")
    os.write(ready_fd, b"1")
    signal.pause()


def test_containers_of_a_killed_process_are_reaped_and_live_ones_kept(rootfs, busybox_image):
    """SIGKILL leaves runc's container running, in a session of its own; reaping ends
    it and deletes its state, and spares a container whose process lives."""
    root = busybox_image.store.root
    orphan, ours = "sleep 1723", "sleep 1724"
    with (
        Snapshots(busybox_image.store).scratch() as scratch,
        overlay_rootfs(busybox_image.lowers, scratch) as other,
        Container(other.merged, sh(f"exec {ours}"), root=root) as live,
    ):
        with killed_when_ready(_start_then_wait, rootfs, root, orphan):
            pass
        assert len(processes_running(orphan)) == 2  # its owner is gone, it is not
        assert len(reap_orphans(root)) == 1
        assert processes_running(orphan) == []
        assert runc_containers(root) == [live.id]
        assert [p.name for p in (root / BUNDLES_DIR).iterdir()] == [live.id]
        assert len(processes_running(ours)) == 1
    assert processes_running(ours) == []
