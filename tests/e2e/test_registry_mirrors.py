"""Our own client behind a mirror: ``[[registry.mirror]]`` in registries.toml and
``--registry-mirror HOST=URL``, with two loopback docker-registries as source and mirror.

An image only the mirror holds can be pulled by its source name only through the
mirror; one only the source holds, only by falling back.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.conftest import start_docker_registry, stop


@pytest.fixture(scope="module")
def mirror_registry(tmp_path_factory):
    registry = start_docker_registry(tmp_path_factory.mktemp("mirror-registry"))
    yield registry
    stop(registry)


@pytest.fixture(scope="module")
def mirror_only(mirror_registry, docker_registry, busybox_layout, tmp_path_factory):
    """``(name, digest)``: busybox as ``SOURCE/mirrored/app:1`` by name, but stored only
    in the mirror (at ``mirrored/app:1`` and ``ns/mirrored/app:1``)."""
    from tests.conftest import Dockyard

    dockyard = Dockyard(tmp_path_factory.mktemp("mirror-setup"))
    for repo in ("mirrored/app", "ns/mirrored/app"):
        dockyard(
            "copy", f"oci:{busybox_layout}:latest", f"docker://{mirror_registry.host}/{repo}:1"
        )
    digest = manifest_digest(mirror_registry.host, "mirrored/app", "1")
    return f"{docker_registry.host}/mirrored/app:1", digest


def manifest_digest(host: str, repo: str, tag: str) -> str | None:
    """The digest the registry at ``host`` has for ``repo:tag``; None if it has none."""
    response = httpx.head(
        f"http://{host}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    return response.headers["docker-content-digest"] if response.status_code == 200 else None


def config_dir(tmp_path, source: str, *mirrors: str) -> dict[str, str]:
    """The environment for a registries.toml giving ``source`` these mirror tables."""
    tables = "".join(f"[[registry.mirror]]\n{m}\n" for m in mirrors)
    (tmp_path / "registries.toml").write_text(f'[[registry]]\nlocation = "{source}"\n{tables}')
    return {"DOCKYARD_CONFIG_DIR": str(tmp_path)}


def test_pull_through_mirror_on_command_line(dockyard, mirror_only, mirror_registry):
    name, digest = mirror_only
    source = name.split("/", 1)[0]
    without = dockyard("pull", name, check=False)
    assert without.returncode != 0  # the source registry does not have it
    pulled = dockyard("--registry-mirror", f"{source}=http://{mirror_registry.host}", "pull", name)
    assert pulled.stdout.decode().strip() == f"{name}: {digest}"


def test_pull_through_mirror_namespace_from_registries_toml(
    dockyard, mirror_only, mirror_registry, tmp_path
):
    name, _ = mirror_only
    source = name.split("/", 1)[0]
    env = config_dir(tmp_path, source, f'location = "{mirror_registry.host}/ns"')
    dockyard("pull", name, env=env)  # served as ns/mirrored/app:1


def test_env_var_mirror_serves_build_from(dockyard, mirror_only, mirror_registry, tmp_path):
    """``FROM`` pulls go through the mirror too (a build with no RUN: no container)."""
    name, _ = mirror_only
    source = name.split("/", 1)[0]
    (tmp_path / "Dockerfile").write_text(f"FROM {name}\nLABEL via=mirror\n")
    env = {"DOCKYARD_REGISTRY_MIRROR": f"{source}=http://{mirror_registry.host}"}
    dockyard("build", "-t", "localhost/via-mirror:1", str(tmp_path), env=env)
    assert b"via" in dockyard("inspect", "localhost/via-mirror:1").stdout


def test_falls_back_when_mirror_is_down_or_lacks_the_image(
    dockyard, busybox_ref, mirror_registry, tmp_path
):
    source = busybox_ref.split("/", 1)[0]
    with socket.socket() as closed:  # bound, never listening: refused, and no one else's
        closed.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{closed.getsockname()[1]}"
        dockyard("--registry-mirror", f"{source}=http://{down}", "pull", busybox_ref)
    dockyard("rmi", busybox_ref)
    # The mirror answers, but has no fixtures/busybox: the source serves it.
    env = config_dir(tmp_path, source, f'location = "{mirror_registry.host}"')
    dockyard("pull", busybox_ref, env=env)
    assert dockyard("inspect", busybox_ref).returncode == 0


def test_digest_only_mirror_is_not_asked_for_tags(dockyard, mirror_only, mirror_registry, tmp_path):
    name, digest = mirror_only
    source = name.split("/", 1)[0]
    env = config_dir(
        tmp_path,
        source,
        f'location = "{mirror_registry.host}"\npull-from-mirror = "digest-only"',
    )
    by_tag = dockyard("pull", name, env=env, check=False)
    assert by_tag.returncode != 0  # the mirror was not asked; the source lacks it
    assert b"mirrors failed" not in by_tag.stderr
    pinned = f"{name.rsplit(':', 1)[0]}@{digest}"
    dockyard("pull", pinned, env=env)  # by digest: the mirror serves it
    assert dockyard("inspect", pinned).returncode == 0


def test_tag_only_mirror_is_not_asked_for_digests(dockyard, mirror_only, mirror_registry, tmp_path):
    name, digest = mirror_only
    source = name.split("/", 1)[0]
    env = config_dir(
        tmp_path, source, f'location = "{mirror_registry.host}"\npull-from-mirror = "tag-only"'
    )
    pinned = f"{name.rsplit(':', 1)[0]}@{digest}"
    assert dockyard("pull", pinned, env=env, check=False).returncode != 0
    dockyard("pull", name, env=env)


def test_push_never_goes_to_the_mirror(
    dockyard, busybox_layout, docker_registry, mirror_registry, tmp_path
):
    target = f"{docker_registry.host}/pushed/not-mirrored:1"
    dockyard("copy", f"oci:{busybox_layout}:latest", "localhost/to-push:1")
    dockyard("tag", "localhost/to-push:1", target)
    env = config_dir(tmp_path, docker_registry.host, f'location = "{mirror_registry.host}"')
    dockyard(
        "--registry-mirror",
        f"{docker_registry.host}=http://{mirror_registry.host}",
        "push",
        target,
        env=env,
    )
    assert manifest_digest(docker_registry.host, "pushed/not-mirrored", "1") is not None
    assert manifest_digest(mirror_registry.host, "pushed/not-mirrored", "1") is None


def test_bad_mirror_settings_are_one_line_errors(dockyard, tmp_path):
    bad_option = dockyard("--registry-mirror", "docker.io", "images", check=False)
    assert bad_option.returncode != 0 and b"HOST=URL" in bad_option.stderr
    env = config_dir(tmp_path, "docker.io", 'location = "m.lan"\npull-from-mirror = "sometimes"')
    bad_file = dockyard("pull", "docker.io/library/busybox:1", env=env, check=False)
    assert bad_file.returncode == 1
    assert b"pull-from-mirror" in bad_file.stderr and b"Traceback" not in bad_file.stderr
