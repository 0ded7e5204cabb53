"""Snapshots and mounts on the real kernel: overlay-format layers that stack exactly as
flattening does, concurrent preparation, committing an upper dir, 200-layer overlays,
network namespaces, and the bind/tmpfs/proc/unmount primitives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from dockyard import reference
from dockyard.errors import ContainerError, DigestError, StoreError
from dockyard.layers import flatten, pack
from dockyard.mountinfo import mount_points_under
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.manifest import build_manifest, dumps
from dockyard.runtime import (
    ContainerConfig,
    Snapshots,
    chain_id,
    create_netns,
    netns,
    overlay_rootfs,
    remove_netns,
    run,
)
from dockyard.runtime import mounts as mounts_module
from dockyard.runtime.mounts import (
    bind,
    proc,
    remove_tree,
    tmpfs,
    unmount,
)
from dockyard.store import Store
from dockyard.store.trash import remove_tree as remove_trash
from dockyard.transfer.copy import copy_image
from dockyard.transfer.transports import open_source, parse_location
from tests.conftest import need
from tests.support.containers import Output, busybox_image, no_leaks

SHARED_FIXTURES = (busybox_image, no_leaks)  # pytest finds them here by name

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root"),
]

Entry = tuple[str, str, str]  # kind (file/dir/sym), name, data or link target


def tar_layer(*entries: Entry) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data.encode()))
    return out.getvalue()


def store_image(store: Store, name: str, layers: list[bytes], *, gzip_them: bool = True):
    """Store an image made of uncompressed layer tars; return its manifest."""
    descriptors, diff_ids = [], []
    for data in layers:
        diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
        blob = gzip.compress(data, mtime=0) if gzip_them else data
        media_type = mt.OCI_LAYER_GZIP if gzip_them else mt.OCI_LAYER
        descriptors.append(Descriptor(media_type, store.blobs.write_bytes(blob), len(blob)))
    config = dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    )
    manifest = build_manifest(
        Descriptor(mt.OCI_CONFIG, store.blobs.write_bytes(config), len(config)), descriptors
    )
    store.blobs.write_bytes(manifest.raw)
    store.tag(reference.parse(f"localhost/snapshots/{name}:latest"), manifest.descriptor())
    return manifest


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: kind and content or target."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = path.read_text()
    return found


LAYERS = [
    tar_layer(
        ("dir", "etc", ""),
        ("file", "etc/a", "a"),
        ("file", "etc/b", "b"),
        ("dir", "opt", ""),
        ("file", "opt/x", "x"),
        ("dir", "opt/sub", ""),
        ("file", "opt/sub/y", "y"),
        ("file", "gone-later", "g"),
        ("dir", "replaced", ""),
        ("file", "replaced/old", "old"),
        ("sym", "link", "etc/a"),
    ),
    tar_layer(
        ("file", "etc/.wh.a", ""),
        ("file", "opt/.wh..wh..opq", ""),
        ("file", "opt/z", "z"),
        ("file", ".wh.replaced", ""),
        ("dir", "replaced", ""),
        ("file", "replaced/new", "new"),
        ("file", "n", "n"),
    ),
    tar_layer(
        ("file", ".wh.n", ""),
        ("file", ".wh.gone-later", ""),
        ("file", "etc/a", "again"),
        ("dir", "d", ""),
        ("file", "d/f", "f"),
        ("file", "etc/.wh.b", ""),
    ),
]


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


def test_overlay_of_snapshots_equals_the_flattened_image(store, tmp_path):
    manifest = store_image(store, "whiteouts", LAYERS)
    lowers = Snapshots(store).prepare(manifest)
    assert len(lowers) == 3 and lowers[0].parent == store.root / "snapshots"
    flat = tmp_path / "flat"
    flatten([io.BytesIO(layer) for layer in LAYERS], flat)
    with Snapshots(store).scratch() as scratch, overlay_rootfs(lowers, scratch) as fs:
        merged = tree(fs.merged)
    assert merged == tree(flat)
    assert merged["etc/a"] == "again" and "etc/b" not in merged
    assert sorted(k for k in merged if k.startswith("opt/")) == ["opt/z"]
    assert sorted(k for k in merged if k.startswith("replaced/")) == ["replaced/new"]


def test_snapshots_are_keyed_by_chain_id_and_shared(store):
    first = store_image(store, "one", LAYERS[:2])
    second = store_image(store, "two", LAYERS)
    snapshots = Snapshots(store)
    lowers_one = snapshots.prepare(first)
    made = {p.name: p.stat().st_ino for p in lowers_one}
    lowers_two = snapshots.prepare(second)
    assert lowers_two[1:] == lowers_one  # the shared bottom layers are reused, not redone
    assert {p.name: p.stat().st_ino for p in lowers_two[1:]} == made
    config = store.read_config(second)
    diff_ids = config["rootfs"]["diff_ids"]
    top = chain_id(chain_id(chain_id(None, diff_ids[0]), diff_ids[1]), diff_ids[2])
    assert lowers_two[0] == snapshots.path(top)
    assert snapshots.lowers([diff_ids[0], chain_id(diff_ids[0], diff_ids[1])]) == lowers_one


def test_a_layer_that_does_not_match_its_diff_id_makes_no_snapshot(store):
    manifest = store_image(store, "lying", [LAYERS[0]])
    config = store.read_config(manifest)
    config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    raw = dumps(config)
    bad = build_manifest(
        Descriptor(mt.OCI_CONFIG, store.blobs.write_bytes(raw), len(raw)), list(manifest.layers)
    )
    store.blobs.write_bytes(bad.raw)
    with pytest.raises(DigestError):
        Snapshots(store).prepare(bad)
    assert sorted(p.name for p in (store.root / "snapshots").iterdir()) == [".holds", ".locks"]
    assert list((store.root / "snapshots/.holds").iterdir()) == []  # released with its owner


def test_concurrent_preparation_extracts_each_layer_once(store, tmp_path):
    big = tar_layer(*[("file", f"f{i:05}", "x" * 1000) for i in range(3000)])
    store_image(store, "big", [big, *LAYERS])
    script = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from dockyard import reference
        from dockyard.runtime import Snapshots
        from dockyard.store import Store

        store = Store(Path({str(store.root)!r}))
        ref = reference.parse("localhost/snapshots/big:latest")
        lowers = Snapshots(store).prepare(store.image_manifest(store.resolve(ref)))
        print(json.dumps([str(p) for p in lowers]))
        """
    )
    children = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) for _ in range(3)
    ]
    results = [json.loads(child.communicate(timeout=120)[0]) for child in children]
    assert all(child.returncode == 0 for child in children)
    assert results[0] == results[1] == results[2]
    entries = sorted(p.name for p in (store.root / "snapshots").iterdir())
    assert len(entries) == 7 and entries[:3] == [".holds", ".locks", ".unsynced"]  # no temps
    assert list((store.root / "snapshots/.holds").iterdir()) == []  # the children exited
    assert len(os.listdir(store.root / "snapshots/.unsynced")) == 4  # one marker each
    assert len(os.listdir(results[0][-1])) == 3000


def test_an_upper_dir_becomes_the_next_snapshot(busybox_image):
    snapshots = Snapshots(busybox_image.store)
    root = busybox_image.store.root
    base_chain = busybox_image.lowers[0].name
    with snapshots.scratch() as scratch:
        with overlay_rootfs(busybox_image.lowers, scratch) as fs:
            config = ContainerConfig(["sh", "-c", "echo made > /made; rm /bin/ls"])
            assert run(fs.merged, config, root=root) == 0
        layer = pack(fs.upper, io.BytesIO(), overlay=True)
        chain = chain_id("sha256:" + base_chain, layer.diff_id)
        committed = snapshots.commit(fs.upper, chain)
        assert committed == snapshots.path(chain) and not fs.upper.exists()
    try:
        with snapshots.scratch() as scratch:
            with overlay_rootfs([committed, *busybox_image.lowers], scratch) as fs:
                out = Output()
                config = ContainerConfig(["sh", "-c", "cat /made; test -e /bin/ls || echo no-ls"])
                assert run(fs.merged, config, root=root, on_output=out) == 0
                assert out.stdout == "made\nno-ls\n"
            # A second build committing the same chain keeps the first one's snapshot.
            assert snapshots.commit(fs.upper, chain) == committed
            assert not fs.upper.exists()
            assert (committed / "made").read_text() == "made\n"
    finally:
        subprocess.run(["rm", "-rf", str(committed)], check=True)


@pytest.mark.parametrize("api", ["new", "mount2"])
def test_two_hundred_layers(busybox_image, monkeypatch, api):
    """The mount option-length case: 200 lowers with 64-hex names under the store."""
    if api == "mount2":
        monkeypatch.setattr(mounts_module, "_has_lowerdir_plus", lambda: False)
    elif not mounts_module._has_lowerdir_plus():
        pytest.skip("this kernel's overlayfs has no lowerdir+ (Linux < 6.8)")
    snapshots = Snapshots(busybox_image.store)
    layers = []
    with snapshots.scratch() as fake:
        for i in range(199):
            layer = fake / hashlib.sha256(str(i).encode()).hexdigest()
            (layer / "layers").mkdir(parents=True)
            (layer / "layers" / f"l{i:03}").write_text(str(i))
            layers.append(layer)
        lowers = [*reversed(layers), *busybox_image.lowers]
        assert len(mounts_module.overlay_options([str(p) for p in lowers], "/u", "/w")) > 4096
        with snapshots.scratch() as scratch, overlay_rootfs(lowers, scratch) as fs:
            out = Output()
            config = ContainerConfig(["sh", "-c", "ls /layers | wc -l; cat /layers/l000"])
            assert run(fs.merged, config, root=busybox_image.store.root, on_output=out) == 0
            assert out.stdout.split() == ["199", "0"]
            mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
            line = next(x for x in mountinfo if str(fs.merged) in x)
            assert ("lowerdir+=" in line) == (api == "new")


def test_an_overlay_with_no_lower_layers(tmp_path):
    with overlay_rootfs([], tmp_path / "state") as fs:
        (fs.merged / "file").write_text("x")
    assert (tmp_path / "state/upper/file").read_text() == "x"
    assert sorted(os.listdir(tmp_path / "state")) == ["upper"]


def test_overlay_mount_errors_are_container_errors(tmp_path):
    with (
        pytest.raises(ContainerError, match="cannot mount overlay"),
        overlay_rootfs([tmp_path / "missing"], tmp_path / "state"),
    ):
        pass
    assert mount_points_under(tmp_path) == []


# -- network namespaces -----------------------------------------------------------------


def test_netns_has_loopback_up_and_goes_away(tmp_path):
    path = create_netns(tmp_path / "net")
    try:
        assert mount_points_under(path) == [str(path)]
        inside = subprocess.run(
            ["nsenter", f"--net={path}", "ip", "-o", "addr"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "lo" in inside and "127.0.0.1/8" in inside
        assert len({line.split()[1] for line in inside.splitlines()}) == 1  # lo only
        assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino
    finally:
        remove_netns(path)
    assert not path.exists()
    remove_netns(path)  # twice is fine


def test_netns_is_removed_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError), netns(tmp_path / "net"):
        raise RuntimeError("boom")
    assert not (tmp_path / "net").exists()
    with pytest.raises(ContainerError):
        create_netns(tmp_path / "no-such-dir" / "net")


# -- mount primitives ---------------------------------------------------------------------


def test_bind_read_only(tmp_path):
    source, target = tmp_path / "src", tmp_path / "dst"
    source.mkdir()
    target.mkdir()
    bind(source, target, readonly=True)
    try:
        with pytest.raises(OSError, match="Read-only"):
            (target / "f").write_text("x")
    finally:
        unmount(target)


def test_tmpfs_and_proc(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "p").mkdir()
    tmpfs(tmp_path / "t", size=1 << 20, mode=0o700)
    proc(tmp_path / "p")
    try:
        assert (tmp_path / "t").stat().st_mode & 0o777 == 0o700
        assert os.statvfs(tmp_path / "t").f_blocks * os.statvfs(tmp_path / "t").f_frsize == 1 << 20
        assert (tmp_path / "p/self/status").exists()
    finally:
        unmount(tmp_path / "t")
        unmount(tmp_path / "p")


def test_unmount_falls_back_to_a_lazy_detach_when_busy(tmp_path):
    (tmp_path / "t").mkdir()
    tmpfs(tmp_path / "t")
    busy = open(tmp_path / "t" / "open-file", "w")  # noqa: SIM115 - held on purpose
    try:
        unmount(tmp_path / "t")
        assert mount_points_under(tmp_path) == []
    finally:
        busy.close()
    unmount(tmp_path / "t")  # not a mount point any more: fine


def test_remove_tree_never_deletes_through_a_mount(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep me")
    tree_root = tmp_path / "scratch"
    (tree_root / "a/b").mkdir(parents=True)
    bind(precious, tree_root / "a/b")
    (tree_root / "c").mkdir()
    tmpfs(tree_root / "c")
    remove_tree(tree_root)
    assert not tree_root.exists()
    assert (precious / "data").read_text() == "keep me"
    remove_tree(tree_root)  # missing is fine


def test_remove_tree_of_an_empty_dir_that_is_a_mount_point_or_a_bind_of_one(tmp_path):
    """An empty dir goes with one rmdir; a mount point that looks empty is detached first,
    the dir bound there left whole."""
    (tmp_path / "empty").mkdir()
    remove_tree(tmp_path / "empty")
    assert not (tmp_path / "empty").exists()
    (tmp_path / "mounted").mkdir()
    tmpfs(tmp_path / "mounted")
    remove_tree(tmp_path / "mounted")
    assert not (tmp_path / "mounted").exists() and mount_points_under(tmp_path) == []
    precious = tmp_path / "precious"
    (precious / "inside").mkdir(parents=True)
    (tmp_path / "bound").mkdir()
    bind(precious / "inside", tmp_path / "bound")
    remove_tree(tmp_path / "bound")
    assert not (tmp_path / "bound").exists() and (precious / "inside").is_dir()


# -- pruning snapshots and what killed processes left -------------------------------------


def child_env(store_root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "DOCKYARD_ROOT": str(store_root)}


def wait_for(condition, what: str, process: subprocess.Popen) -> None:
    """Wait (a minute at most) until ``condition()``; fail early if ``process`` ends."""
    deadline = time.monotonic() + 60
    while not condition():
        assert process.poll() is None, f"{what}: the process ended first"
        assert time.monotonic() < deadline, f"{what}: still waiting after a minute"
        time.sleep(0.01)


def store_busybox(store: Store, busybox_layout: Path, name: str) -> reference.Reference:
    ref = reference.parse(f"localhost/prune/{name}:latest")
    source = open_source(parse_location(f"oci:{busybox_layout}:latest"), store_root=None)
    copy_image(source, store.destination(ref))
    return ref


def snapshot_dirs(store: Store) -> list[str]:
    return sorted(p.name for p in (store.root / "snapshots").iterdir() if p.name[0] != ".")


def test_prune_after_rmi_removes_only_the_snapshots_no_other_image_shares(store, tmp_path):
    one = store_image(store, "one", LAYERS[:2])
    two = store_image(store, "two", LAYERS)
    with Snapshots(store) as snapshots:
        snapshots.prepare(one)
        lowers_two = snapshots.prepare(two)
    store.untag(reference.parse("localhost/snapshots/two:latest"))

    result = Snapshots(store).prune()
    assert result.removed == ["sha256:" + lowers_two[0].name] and result.temps == 0
    assert result.freed == len("again") + len("f")  # the files of LAYERS[2]; whiteouts are 0
    assert snapshot_dirs(store) == sorted(p.name for p in lowers_two[1:])
    assert set(store.prune().removed) == {two.digest, two.config.digest, two.layers[2].digest}
    with Snapshots(store) as snapshots:
        lowers_one = snapshots.prepare(one)
        with snapshots.scratch() as scratch, overlay_rootfs(lowers_one, scratch) as fs:
            merged = tree(fs.merged)
    flatten([io.BytesIO(layer) for layer in LAYERS[:2]], tmp_path / "flat")
    assert merged == tree(tmp_path / "flat")


def test_prune_spares_the_snapshots_of_a_running_container(
    dockyard, store_root, busybox_layout, tmp_path
):
    need("runc")
    store = Store(store_root)
    ref = store_busybox(store, busybox_layout, "running")
    manifest = store.image_manifest(store.resolve(ref))
    volume = tmp_path / "volume"
    volume.mkdir()
    os.mkfifo(volume / "go")
    go = _held_open(volume / "go")
    script = "echo up > /vol/started; read x < /vol/go; cat /etc/passwd"
    command = ["run", "--rm", "-v", f"{volume}:/vol", str(ref), "sh", "-c", script]
    running = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.main", *command],
        env=child_env(store_root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for((volume / "started").exists, "container start", running)
        in_use = snapshot_dirs(store)
        assert len(in_use) == len(manifest.layers)
        dockyard("rmi", str(ref))
        out = dockyard("prune").stdout.decode()
        assert out.startswith(f"removed {len(manifest.blobs) + 1} blobs, 0 snapshots and ")
        assert snapshot_dirs(store) == in_use
    finally:
        with go:
            go.write(b"go\n")
        stdout, stderr = running.communicate(timeout=60)
    assert running.returncode == 0, stderr
    assert stdout.startswith(b"root:x:0:0:")  # read from a lower dir after the prune
    out = dockyard("prune").stdout.decode()
    assert out.startswith(f"removed 0 blobs, {len(in_use)} snapshots and ")
    assert snapshot_dirs(store) == []


def _held_open(fifo: Path) -> BinaryIO:
    """Open ``fifo`` read-write, which never blocks: the reader's ``open`` returns at once
    and its reads wait for what we write. (Probing for a reader by opening to write and
    closing again would wake the reader's ``open`` and let it read end-of-file.)"""
    return os.fdopen(os.open(fifo, os.O_RDWR), "wb", buffering=0)


def test_an_extraction_killed_midway_is_reaped_and_redone(store):
    big = tar_layer(*[("file", f"f{i:04}", "x" * 1000) for i in range(2000)])
    manifest = store_image(store, "killed", [big], gzip_them=False)
    blob = store.blobs.path(manifest.layers[0].digest)
    blob.unlink()
    os.mkfifo(blob)  # the extraction will wait for us to feed it, mid-way
    feed = _held_open(blob)
    script = textwrap.dedent(
        """
        from dockyard import reference
        from dockyard.runtime import Snapshots
        from dockyard.store import Store

        store = Store()
        manifest = store.image_manifest(store.resolve(reference.parse(
            "localhost/snapshots/killed:latest"
        )))
        Snapshots(store).prepare(manifest)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], env=child_env(store.root))
    try:
        with feed:
            feed.write(big[: len(big) // 2])  # returns once the extraction has read most of it
            temps = list((store.root / "snapshots").glob(".tmp-*"))
            assert len(temps) == 1 and temps[0].is_dir()
            child.kill()
            child.wait()
    finally:
        child.kill()
        child.wait()
    assert (store.root / "snapshots" / ".holds").exists()
    blob.unlink()
    store.blobs.write_bytes(big)

    result = Snapshots(store).prune()
    assert result.removed == [] and result.temps == 1
    assert sorted(p.name for p in (store.root / "snapshots").iterdir()) == [".holds", ".locks"]
    assert list((store.root / "snapshots/.holds").iterdir()) == []  # the dead one's hold
    assert list((store.root / "snapshots/.locks").iterdir()) == []
    lowers = Snapshots(store).prepare(manifest)
    assert len(os.listdir(lowers[0])) == 2000


def test_a_process_killed_with_its_overlay_mounted_leaves_nothing_after_prune(
    dockyard, store_root, busybox_layout
):
    need("runc")
    store = Store(store_root)
    ref = store_busybox(store, busybox_layout, "base")
    script = textwrap.dedent(
        f"""
        import signal
        from dockyard import reference
        from dockyard.runtime import Snapshots, overlay_rootfs
        from dockyard.store import Store

        store = Store()
        snapshots = Snapshots(store)
        lowers = snapshots.prepare(store.image_manifest(store.resolve(reference.parse(
            {str(ref)!r}
        ))))
        with snapshots.scratch() as scratch, overlay_rootfs(lowers, scratch) as fs:
            (fs.merged / "written").write_text("by a process about to be killed")
            print(scratch, flush=True)
            signal.pause()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], env=child_env(store_root), stdout=subprocess.PIPE
    )
    try:
        scratch = Path(child.stdout.readline().decode().strip())
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert mount_points_under(store_root) == [str(scratch / "merged")]
    assert (scratch / "upper/written").exists()
    snapshots_before = snapshot_dirs(store)

    result = Snapshots(store).prune()
    assert result.removed == [] and result.temps == 1
    assert result.freed >= len("by a process about to be killed")
    assert mount_points_under(store_root) == [] and not scratch.exists()
    assert snapshot_dirs(store) == snapshots_before
    run_result = dockyard("run", "--rm", str(ref), "sh", "-c", "echo still runs")
    assert run_result.stdout == b"still runs\n"


def test_trash_is_never_deleted_through_a_mount(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep me")
    doomed = tmp_path / ".trash-x"
    (doomed / "a").mkdir(parents=True)
    bind(precious, doomed / "a")
    try:
        with pytest.raises(StoreError, match="mount point"):
            remove_trash(doomed)
        assert (precious / "data").read_text() == "keep me"
    finally:
        unmount(doomed / "a")
    assert remove_trash(doomed) == 0 and not doomed.exists()


def test_a_snapshot_unsynced_before_a_reboot_is_made_again(store):
    """Snapshots are not synced one by one; one made in an earlier boot and never synced
    (its marker says so) may have lost files in a crash, and is extracted anew."""
    manifest = store_image(store, "unsynced", LAYERS)
    snapshots = Snapshots(store)
    bottom = snapshots.prepare(manifest)[-1]
    marker = store.root / "snapshots/.unsynced" / bottom.name
    assert marker.read_text() == Path("/proc/sys/kernel/random/boot_id").read_text().strip()

    (bottom / "etc/a").unlink()  # what a crash can do to files never written out
    marker.write_text("an-earlier-boot")
    assert Snapshots(store).prepare(manifest)[-1] == bottom
    assert (bottom / "etc/a").read_text() == "a"  # extracted again
    assert marker.read_text() != "an-earlier-boot"

    snapshots.close()
    Snapshots(store).prune()  # syncs once: markers of this boot go, snapshots stay
    assert list((store.root / "snapshots/.unsynced").iterdir()) == []
    assert (bottom / "etc/a").read_text() == "a"
