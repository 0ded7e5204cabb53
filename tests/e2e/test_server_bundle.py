"""Offline bundles: export everything a mirror cached and a registry stored as one OCI
archive, import it into an empty registry, pull from that."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import httpx
import pytest

from tests.conftest import start_docker_registry, stop
from tests.support.registry_server import copy, manifest_digest, skopeo, start_server

pytestmark = pytest.mark.e2e


def cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "dockyard.cli.main", *args], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result


def archive_index(path) -> dict:
    with tarfile.open(path) as tar:
        return json.load(tar.extractfile("index.json"))


def test_export_import_round_trip(tmp_path, busybox_layout):
    upstream = start_docker_registry(tmp_path / "upstream")
    copy(f"oci:{busybox_layout}:latest", f"docker://{upstream.host}/org/app:1")
    server = start_server(tmp_path / "site-a", "--upstream", f"up=http://{upstream.host}")
    try:
        copy(f"docker://{server.host}/up/org/app:1", f"oci:{tmp_path}/pulled:1")
        copy(
            f"oci:{busybox_layout}:latest",
            f"docker://{server.host}/local/tool:2",
            "--format",
            "v2s2",
        )
        mirrored = manifest_digest(server.url, "up/org/app", "1")
        local = manifest_digest(server.url, "local/tool", "2")
    finally:
        server.stop()
        stop(upstream)

    bundle = tmp_path / "bundle.tar"
    out = cli("registry", "export", "--root", str(server.root), "-o", str(bundle))
    assert f"exported {upstream.host}/org/app:1" in out.stdout
    names = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in archive_index(bundle)["manifests"]
    }
    assert names == {f"{upstream.host}/org/app:1": mirrored, "local/tool:2": local}
    # other tools read the bundle by its upstream names
    skopeo("inspect", f"oci-archive:{bundle}:{upstream.host}/org/app:1")

    only = tmp_path / "only.tar"
    cli("registry", "export", "--root", str(server.root), "-o", str(only), "--repo", "local/*")
    assert [m["digest"] for m in archive_index(only)["manifests"]] == [local]

    # an offline site: a fresh registry with no upstream at all
    site_b = tmp_path / "site-b"
    cli("registry", "import", "--root", str(site_b / "root"), str(bundle))
    offline = start_server(site_b)
    try:
        assert manifest_digest(offline.url, "up/org/app", "1") == mirrored
        assert manifest_digest(offline.url, "local/tool", "2") == local
        copy(f"docker://{offline.host}/up/org/app:1", f"oci:{tmp_path}/from-b:1")
        copy(f"docker://{offline.host}/local/tool:2", f"oci:{tmp_path}/from-b:2")
        repos = httpx.get(f"{offline.url}/v2/_catalog").json()["repositories"]
        assert repos == ["local/tool", "up/org/app"]
    finally:
        offline.stop()
    # the import remembers what each mirror repository mirrors: it exports the same way
    again = tmp_path / "again.tar"
    cli("registry", "export", "--root", str(site_b / "root"), "-o", str(again))
    assert {
        m["annotations"]["org.opencontainers.image.ref.name"]
        for m in archive_index(again)["manifests"]
    } == set(names)


@pytest.mark.parametrize("kind", ["oci-archive", "oci"])
def test_import_a_foreign_archive(tmp_path, busybox_layout, kind):
    """An oci-archive or OCI layout directory skopeo wrote, imported by its ref name."""
    archive = tmp_path / ("foreign.tar" if kind == "oci-archive" else "foreign")
    copy(f"oci:{busybox_layout}:latest", f"{kind}:{archive}:quay.io/org/thing:5")
    root = tmp_path / "site" / "root"
    out = cli(
        "registry",
        "import",
        "--root",
        str(root),
        "--upstream",
        "quay=https://quay.io",
        str(archive),
    )
    assert "imported quay/org/thing:5" in out.stdout
    server = start_server(tmp_path / "site")
    try:
        copy(f"docker://{server.host}/quay/org/thing:5", f"oci:{tmp_path}/got:5")
    finally:
        server.stop()
