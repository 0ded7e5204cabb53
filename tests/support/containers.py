"""Containers under runc in tests: a store holding the busybox image (a session
fixture), what a container writes, and the checks that nothing is left behind (the
``no_leaks`` fixture; a module imports it to have it run after each of its tests)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard import reference
from dockyard.mountinfo import mount_points_under
from dockyard.runtime import Snapshots
from dockyard.runtime.container import BUNDLES_DIR, RUNC_DIR
from dockyard.store import Store
from dockyard.transfer.copy import copy_image
from dockyard.transfer.transports import open_source, parse_location
from tests.conftest import need

BUSYBOX = reference.parse("localhost/runtime-tests/busybox:latest")


@dataclass
class Image:
    """The busybox image in a store, with its snapshots prepared."""

    store: Store
    lowers: list[Path]


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory, busybox_layout) -> Image:
    need("runc")
    if os.geteuid() != 0:
        pytest.skip("containers need root")
    store = Store(tmp_path_factory.mktemp("runtime") / "store")
    source = open_source(parse_location(f"oci:{busybox_layout}:latest"), store_root=None)
    copy_image(source, store.destination(BUSYBOX))
    manifest = store.image_manifest(store.resolve(BUSYBOX))
    assert manifest is not None
    return Image(store, Snapshots(store).prepare(manifest))


def runc_containers(root: Path) -> list[str]:
    result = subprocess.run(
        ["runc", "--root", str(root / RUNC_DIR), "list", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


def processes_running(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (zombies excepted)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


@pytest.fixture(autouse=True)
def no_leaks(request, tmp_path) -> Iterator[None]:
    """After each test: no mounts under its dirs or the store, no runc containers and
    no bundles in our runc root, no scratch dirs among the snapshots."""
    yield
    image: Image | None = (
        request.getfixturevalue("busybox_image")
        if "busybox_image" in request.fixturenames
        else None
    )
    assert mount_points_under(tmp_path) == []
    if image is not None:
        root = image.store.root
        assert mount_points_under(root) == []
        assert runc_containers(root) == []
        assert list((root / BUNDLES_DIR).glob("*")) == []
        assert [p.name for p in (root / "snapshots").glob(".scratch-*")] == []


class Output:
    """Collects what a container writes, per stream."""

    def __init__(self) -> None:
        self.chunks: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def __call__(self, stream: str, data: bytes) -> None:
        self.chunks[stream] += data

    @property
    def stdout(self) -> str:
        return self.chunks["stdout"].decode()

    @property
    def stderr(self) -> str:
        return self.chunks["stderr"].decode()
