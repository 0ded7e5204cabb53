"""The store is an OCI layout: skopeo and umoci read it; separate processes share it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dockyard.layout.oci_dir import LayoutSource
from dockyard.reference import parse
from dockyard.store import Store
from tests.conftest import need
from tests.support.sample_images import copy_by_hand

pytestmark = pytest.mark.e2e

PULL = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from dockyard.layout.oci_dir import LayoutSource
    from dockyard.reference import parse
    from dockyard.store import Store
    from tests.support.sample_images import copy_by_hand

    layout, root, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    sys.stdin.readline()  # start together
    for name in names:
        copy_by_hand(LayoutSource(layout, "latest"), Store(root).destination(parse(name)))
    """
)


def test_skopeo_and_umoci_read_the_store(busybox_layout, busybox_rootfs, store_root, tmp_path):
    need("skopeo", "umoci")
    copy_by_hand(
        LayoutSource(busybox_layout, "latest"), Store(store_root).destination(parse("busybox"))
    )
    expected = LayoutSource(busybox_layout, "latest").descriptor.digest
    location = f"oci:{store_root}:docker.io/library/busybox:latest"
    info = json.loads(
        subprocess.run(["skopeo", "inspect", location], check=True, capture_output=True).stdout
    )
    assert info["Digest"] == expected
    subprocess.run(
        [
            "umoci",
            "raw",
            "unpack",
            "--image",
            f"{store_root}:docker.io/library/busybox:latest",
            tmp_path / "rootfs",
        ],
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "rootfs/bin/busybox").read_bytes() == (
        busybox_rootfs / "bin/busybox"
    ).read_bytes()


def test_two_processes_pull_into_one_store(busybox_layout, store_root):
    names = {w: [f"localhost:5000/w{w}/busybox:t{i}" for i in range(10)] for w in range(2)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PULL, str(busybox_layout), str(store_root), *names[w]],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],  # so the script can import tests.unit
        )
        for w in names
    ]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors

    store = Store(store_root)
    assert {str(i.ref) for i in store.images()} == {n for ns in names.values() for n in ns}
    assert store.prune(wait=False).removed == []
    need("skopeo")
    for name in (names[0][-1], names[1][-1]):
        subprocess.run(
            ["skopeo", "inspect", f"oci:{store_root}:{name}"], check=True, capture_output=True
        )
