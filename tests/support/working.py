"""Working containers in tests: a busybox-based base image (``base``, over the session's
``base_tree``), and the check that nothing is left mounted or running (``clean_host``,
autouse: a module binds it to a name of its own to have it run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.mountinfo import mount_points_under
from dockyard.runtime.container import BUNDLES_DIR
from tests.conftest import need
from tests.support.containers import runc_containers
from tests.support.trees import build_lower

BASE = "localhost/t/base:1"


@pytest.fixture(autouse=True)
def clean_host(store_root) -> Iterator[None]:
    """Nothing is left mounted or running once the containers are removed."""
    need("runc")
    yield
    for name in (
        os.listdir(store_root / "containers") if (store_root / "containers").exists() else []
    ):
        subprocess.run(
            [sys.executable, "-m", "dockyard.cli.main", "container", "rm", name],
            env={**os.environ, "DOCKYARD_ROOT": str(store_root)},
            capture_output=True,
        )
    assert mount_points_under(store_root) == []
    if (store_root / "runc").exists():
        assert runc_containers(store_root) == []
    assert list((store_root / BUNDLES_DIR).glob("*")) == []


@pytest.fixture(scope="session")
def base_tree(tmp_path_factory, busybox_rootfs) -> Path:
    """busybox plus the tree of the overlay tests: files, dirs to delete, a dir to
    become a file and a file to become a dir, hardlinks, symlinks, an owner."""
    tree = tmp_path_factory.mktemp("base") / "tree"
    shutil.copytree(busybox_rootfs, tree, symlinks=True)
    build_lower(tree)
    os.chown(tree / "etc/keep", 1000, 1000)
    return tree


@pytest.fixture
def base(dockyard, base_tree) -> str:
    dockyard("import", "--cmd", "/bin/sh", "--env", "PATH=/bin", str(base_tree), BASE)
    return BASE


def lines(result: subprocess.CompletedProcess) -> list[str]:
    return result.stdout.decode().splitlines()
