"""Settings, names and upstream routing of the registry server."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.registry.server import names
from dockyard.registry.server.config import (
    ConfigError,
    ServerConfig,
    check,
    from_document,
    load_file,
    parse_upstream,
)
from dockyard.registry.server.mirror import Mirror
from dockyard.registry.server.run import parse_addr
from dockyard.registry.server.storage import Storage


@pytest.mark.parametrize("name", ["a", "library/busybox", "a-b/c.d/e__f", "a--b/0"])
def test_valid_names(name):
    assert names.valid_name(name)


@pytest.mark.parametrize(
    "name", ["", "A", "../etc", "a/../b", "a//b", "/a", "a/", "_a", "a/.b", "a..b", "a" * 256]
)
def test_invalid_names(name):
    assert not names.valid_name(name)


def test_tags_digests_uploads():
    assert names.valid_tag("v1.0_rc-1") and names.valid_tag("_x")
    assert not names.valid_tag(".x") and not names.valid_tag("a/b") and not names.valid_tag("..")
    assert not names.valid_tag("x" * 129)
    assert names.valid_digest("sha256:" + "a" * 64)
    assert not names.valid_digest("sha256:" + "A" * 64)
    assert not names.valid_digest("sha256:../../" + "a" * 58)
    assert names.valid_upload_id("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
    assert not names.valid_upload_id("../x")


def test_upstream_flag():
    up = parse_upstream("quay=https://quay.io")
    assert (up.name, up.url, up.host, up.canonical_host) == (
        "quay",
        "https://quay.io",
        "quay.io",
        "quay.io",
    )
    hub = parse_upstream("hub=registry-1.docker.io")
    assert hub.url == "https://registry-1.docker.io" and hub.is_docker_hub
    assert hub.canonical_host == "docker.io"
    for bad in ("quay", "Quay=https://quay.io", "q=ftp://x", "q=https://quay.io/path"):
        with pytest.raises(ConfigError):
            parse_upstream(bad)


TOML = """
addr = "0.0.0.0:5001"
tag_ttl = "2m"
read_only = true

[auth]
htpasswd = "/etc/htpasswd"
mode = "token"
anonymous_pull = true
failure_limit = 20

[[upstream]]
name = "quay"
url = "https://quay.io"
username = "robot"
password = "secret"
tag_ttl = 30

[[upstream]]
name = "up"
url = "http://127.0.0.1:5000"
"""

YAML = """
addr: 0.0.0.0:5001
upstreams:
  quay: https://quay.io
  ghcr: {url: https://ghcr.io, tag_ttl: 10m}
"""


def test_toml_and_yaml_config(tmp_path):
    path = tmp_path / "registry.toml"
    path.write_text(TOML)
    config = from_document(load_file(path), str(path), ServerConfig(Path("/r")))
    assert config.addr == "0.0.0.0:5001" and config.tag_ttl == 120 and config.read_only
    assert config.auth_mode == "token" and config.anonymous_pull
    assert config.auth_failure_limit == 20
    quay = config.upstream("quay")
    assert quay.username == "robot" and quay.password == "secret" and quay.tag_ttl == 30
    assert "secret" not in repr(quay)
    assert config.upstream("up").url == "http://127.0.0.1:5000"
    check(config)
    path = tmp_path / "registry.yaml"
    path.write_text(YAML)
    config = from_document(load_file(path), str(path), ServerConfig(Path("/r")))
    assert [u.name for u in config.upstreams] == ["quay", "ghcr"]
    assert config.upstream("ghcr").tag_ttl == 600


@pytest.mark.parametrize(
    "text",
    [
        "nope = 1",
        '[[upstream]]\nname = "x"',
        '[auth]\nmode = "magic"',
        "[auth]\nfailure_limit = 0",
        '[auth]\nfailure_limit = "many"',
        'tag_ttl = "soon"',
        '[[upstream]]\nname = "x"\nurl = "https://x.io"\nextra = 1',
    ],
)
def test_bad_config(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        from_document(load_file(path), str(path), ServerConfig(Path("/r")))


def test_check():
    with pytest.raises(ConfigError):
        check(
            ServerConfig(
                Path("/r"),
                upstreams=(parse_upstream("a=https://a.io"), parse_upstream("a/b=https://b.io")),
            )
        )
    with pytest.raises(ConfigError):
        check(ServerConfig(Path("/r"), tls_cert=Path("/c")))
    with pytest.raises(ConfigError):
        check(ServerConfig(Path("/r"), auth_mode="token"))


def test_addr():
    assert parse_addr("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse_addr(":5000") == ("0.0.0.0", 5000)
    assert parse_addr("[::1]:5000") == ("::1", 5000)
    with pytest.raises(ConfigError):
        parse_addr("localhost")


def test_routing(tmp_path):
    config = ServerConfig(
        tmp_path,
        upstreams=(
            parse_upstream("hub=https://registry-1.docker.io"),
            parse_upstream("quay=https://quay.io"),
            parse_upstream("quay/special=https://special.example"),
        ),
    )
    mirror = Mirror(Storage(tmp_path), config)
    try:
        route = mirror.route("hub/busybox")
        assert (route.upstream.name, route.remote, route.local) == (
            "hub",
            "library/busybox",
            "hub/library/busybox",
        )
        assert route.upstream.external_name(route.remote) == "docker.io/library/busybox"
        assert mirror.route("hub/library/busybox").local == "hub/library/busybox"
        assert mirror.route("quay/org/repo").remote == "org/repo"
        assert mirror.route("quay/special/x").upstream.name == "quay/special"  # longest prefix
        assert mirror.route("quay") is None and mirror.route("local/app") is None
        assert mirror.is_mirrored("quay/anything") and not mirror.is_mirrored("quayx/a")
        # containerd's mirror protocol: the upstream by host
        assert mirror.route("org/repo", ns="quay.io").local == "quay/org/repo"
        assert mirror.route("busybox", ns="docker.io").local == "hub/library/busybox"
        assert mirror.route("org/repo", ns="elsewhere.io") is None
    finally:
        mirror.close()
