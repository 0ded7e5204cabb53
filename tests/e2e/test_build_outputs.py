"""What ``dockyard build`` writes besides the store, opened by skopeo (not by us):
``--output`` tarballs and layouts, ``--cache-to oci:DIR``; and ``--build-arg NAME``."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Dockyard, need

pytestmark = pytest.mark.e2e

DOCKERFILE = "FROM scratch\nARG NAME=default\nLABEL name=$NAME\nCOPY f /f\n"


@pytest.fixture
def context(tmp_path) -> Path:
    """A build that needs no base image and no runtime: ARG, LABEL and a COPY."""
    directory = tmp_path / "ctx"
    directory.mkdir()
    (directory / "Dockerfile").write_text(DOCKERFILE)
    (directory / "f").write_text("payload\n")
    return directory


def skopeo_inspect(location: str, *options: str) -> dict:
    need("skopeo")
    command = ["skopeo", "inspect", *options, location]
    return json.loads(subprocess.run(command, check=True, capture_output=True).stdout)


def label(dockyard, ref: str) -> str:
    return json.loads(dockyard("inspect", ref).stdout)["Config"]["config"]["Labels"]["name"]


def test_a_bare_build_arg_unset_in_the_environment_keeps_the_arg_default(dockyard, context):
    dockyard("build", "-q", "-t", "localhost/t/arg:1", "--build-arg", "NAME", str(context))
    assert label(dockyard, "localhost/t/arg:1") == "default"
    env = {"NAME": "from-env"}
    dockyard("build", "-q", "-t", "localhost/t/arg:2", "--build-arg", "NAME", str(context), env=env)
    assert label(dockyard, "localhost/t/arg:2") == "from-env"


def test_type_oci_writes_a_tarball_skopeo_opens_by_tag(dockyard, context, tmp_path):
    archive = tmp_path / "app.tar"
    dockyard(
        "build",
        "-q",
        "-t",
        "localhost/t/app:1",
        "--output",
        f"type=oci,dest={archive}",
        str(context),
    )
    assert archive.is_file() and tarfile.is_tarfile(archive)
    assert skopeo_inspect(f"oci-archive:{archive}:1")["Labels"] == {"name": "default"}

    layout = tmp_path / "layout"
    dockyard(
        "build",
        "-q",
        "-t",
        "localhost/t/app:1",
        "--output",
        f"type=oci,tar=false,dest={layout}",
        str(context),
    )
    assert skopeo_inspect(f"oci:{layout}:1")["Labels"] == {"name": "default"}


def test_dest_dash_writes_the_tarball_to_stdout(dockyard, context, tmp_path):
    for kind, transport in (("oci", "oci-archive"), ("docker", "docker-archive")):
        out = dockyard(
            "build", "-t", "localhost/t/app:1", "--output", f"type={kind},dest=-", str(context)
        ).stdout
        archive = tmp_path / f"{kind}.tar"
        archive.write_bytes(out)
        assert skopeo_inspect(f"{transport}:{archive}")["Labels"] == {"name": "default"}


def test_help_lists_the_output_types(dockyard):
    text = dockyard("build", "--help").stdout.decode()
    for kind in ("store", "registry", "oci", "docker", "local", "tar=false", "dest=-"):
        assert kind in text


def test_cache_to_an_oci_layout_gives_a_fresh_store_its_hits(dockyard, context, tmp_path):
    cache = f"oci:{tmp_path / 'cache'}"
    dockyard("build", "-q", "-t", "localhost/t/cached:1", "--cache-to", cache, str(context))
    assert skopeo_inspect(f"{cache}:buildcache", "--raw")["layers"]  # other tools read it
    fresh_root = tmp_path / "fresh-store"
    fresh_root.mkdir()
    out = Dockyard(fresh_root)(
        "build", "-t", "localhost/t/cached:1", "--cache-from", cache, str(context)
    )
    assert b"0 steps run, 1 cached" in out.stderr
