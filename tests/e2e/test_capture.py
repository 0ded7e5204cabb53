"""Offline delivery: ``build --capture`` and ``capture --from-manifests`` write one
bundle of every image needed; with the registry gone, ``dockyard load`` and ``dockyard
registry import`` of that bundle are enough to run and rebuild."""

from __future__ import annotations

import json
import tarfile
import textwrap

import pytest

from tests.conftest import Dockyard, start_docker_registry, stop

REPOS = ("capture/base", "capture/copysrc", "capture/mountsrc", "capture/web", "capture/job")


@pytest.fixture
def registry(tmp_path, busybox_layout):
    """A registry of its own holding busybox under every name in REPOS (tag 1), which
    the test may stop to be offline."""
    registry = start_docker_registry(tmp_path / "registry")
    setup = Dockyard(tmp_path / "setup-store")
    for repo in REPOS:
        setup("copy", f"oci:{busybox_layout}:latest", f"docker://{registry.host}/{repo}:1")
    yield registry
    if registry.process.poll() is None:
        stop(registry)


def dockerfile(host: str) -> str:
    return textwrap.dedent(
        f"""\
        FROM {host}/capture/base:1
        COPY --from={host}/capture/copysrc:1 /etc/passwd /copied
        RUN --mount=type=bind,from={host}/capture/mountsrc:1,target=/m cat /m/etc/group >/grp
        """
    )


def index_names(archive) -> list[tuple[str, str]]:
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
    return [
        (
            m["annotations"]["org.opencontainers.image.ref.name"],
            m["annotations"]["io.containerd.image.name"],
        )
        for m in index["manifests"]
    ]


@pytest.mark.slow
def test_build_capture_rebuilds_offline(registry, tmp_path):
    host = registry.host
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile(host))
    bundle = tmp_path / "bundle.tar"
    online = Dockyard(tmp_path / "online")
    built = online(
        "build", "--network", "none", "-t", "localhost/captured/app:1", "--capture",
        str(bundle), str(context),
    )  # fmt: skip
    assert b"captured 4 image(s)" in built.stderr
    expected = {f"{host}/{repo}:1" for repo in REPOS[:3]} | {"localhost/captured/app:1"}
    names = index_names(bundle)
    assert {ref for ref, _ in names} == expected
    assert all(ref == containerd for ref, containerd in names)

    stop(registry)  # from here on, no registry
    offline = Dockyard(tmp_path / "offline")
    loaded = offline("load", "-i", str(bundle)).stdout.decode()
    assert all(f"Loaded image: {name}" in loaded for name in expected)
    rebuilt = offline("build", "--network", "none", "-t", "localhost/rebuilt:1", str(context))
    assert b"pulling" not in rebuilt.stderr
    ids = [
        json.loads(d("inspect", name).stdout)["Manifest"]["layers"]
        for d, name in ((online, "localhost/captured/app:1"), (offline, "localhost/rebuilt:1"))
    ]
    assert len(ids[0]) == len(ids[1]) == 3

    served = offline(
        "registry", "import", "--root", str(tmp_path / "registry-root"), str(bundle)
    ).stdout.decode()
    assert "4 image(s) imported" in served
    assert f"imported {host.replace(':', '-')}/capture/base:1" in served


def test_capture_to_a_layout_directory_loads(registry, tmp_path):
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx/Dockerfile").write_text(f"FROM {registry.host}/capture/base:1\nENV A=1\n")
    layout = tmp_path / "layout"
    Dockyard(tmp_path / "s1")("build", "--capture", f"{layout}/", str(tmp_path / "ctx"))
    assert (layout / "oci-layout").is_file()
    stop(registry)
    loaded = Dockyard(tmp_path / "s2")("load", "-i", str(layout)).stdout.decode()
    assert f"Loaded image: {registry.host}/capture/base:1" in loaded
    assert "Loaded image: localhost/dockyard-build@sha256:" in loaded


def test_capture_from_manifests(registry, tmp_path):
    host = registry.host
    deploy = tmp_path / "deploy"
    (deploy / "chart").mkdir(parents=True)
    (deploy / "app.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: apps/v1
            kind: Deployment
            spec:
              template:
                spec:
                  initContainers:
                    - image: {host}/capture/base:1
                  containers:
                    - image: {host}/capture/web:1
            ---
            apiVersion: batch/v1
            kind: CronJob
            spec:
              jobTemplate:
                spec:
                  template:
                    spec:
                      containers:
                        - image: {host}/capture/job:1
            """
        )
    )
    (deploy / "chart/values.yaml").write_text(
        f"image:\n  registry: {host}\n  repository: capture/copysrc\n  tag: '1'\n"
    )
    (deploy / "README.md").write_text(f"image: {host}/capture/mountsrc:1\n")  # not YAML
    bundle = tmp_path / "bundle.tar"
    out = Dockyard(tmp_path / "s1")(
        "capture", "--from-manifests", str(deploy), "-o", str(bundle)
    ).stdout.decode()
    assert f"found {host}/capture/base:1 at {deploy}/app.yaml:7" in out
    assert f"found {host}/capture/web:1 at {deploy}/app.yaml:9" in out
    assert f"found {host}/capture/job:1 at {deploy}/app.yaml:19" in out
    assert f"found {host}/capture/copysrc:1 at {deploy}/chart/values.yaml:1" in out
    assert "mountsrc" not in out
    stop(registry)
    loaded = Dockyard(tmp_path / "s2")("load", "-i", str(bundle)).stdout.decode()
    assert loaded.count("Loaded image:") == 4


def test_capture_refuses_bad_manifests_before_pulling(tmp_path, dockyard):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nspec:\n  containers:\n    - image: [oops\n")
    result = dockyard("capture", "--from-manifests", str(bad), "-o", str(tmp_path / "b.tar"),
                      check=False)  # fmt: skip
    assert result.returncode == 1
    assert f"error: {bad}:5: not YAML".encode() in result.stderr
    assert b"Traceback" not in result.stderr and b"pulling" not in result.stderr
    assert not (tmp_path / "b.tar").exists()
