"""Settings, names and upstream routing of the registry server."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dockyard.registry.server import names, nshosts
from dockyard.registry.server.apierrors import APIError
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
token_key = "/etc/dockyard/token.key"

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
    assert config.token_key == Path("/etc/dockyard/token.key")
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
    s3_token = ServerConfig(
        Path("/r"), storage="s3://bucket/p", htpasswd=Path("/h"), auth_mode="token"
    )
    with pytest.raises(ConfigError, match="token_key"):  # replicas must share one key
        check(s3_token)
    check(replace(s3_token, token_key=Path("/k")))


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


def test_allowed_upstream_routing(tmp_path):
    """?ns= names a host no upstream is configured for: served from ns/<host>/ if the
    allow-list permits it, 403 if not; ns/ then takes no pushes."""
    config = check(
        ServerConfig(
            tmp_path,
            upstreams=(parse_upstream("quay=https://quay.io"),),
            allow_upstreams=("ghcr.io", "127.0.0.1:5000", "Docker.io"),
        )
    )
    mirror = Mirror(Storage(tmp_path), config)
    try:
        route = mirror.route("org/app", ns="ghcr.io")
        assert (route.upstream.name, route.remote, route.local) == (
            "ns/ghcr.io",
            "org/app",
            "ns/ghcr.io/org/app",
        )
        assert not route.upstream.config.trusted
        assert route.upstream.config.url == "https://ghcr.io"
        assert route.upstream.external_name(route.remote) == "ghcr.io/org/app"
        assert mirror.route("org/repo", ns="quay.io").local == "quay/org/repo"  # configured
        local = mirror.route("app", ns="127.0.0.1:5000")
        assert local.local == "ns/127.0.0.1_5000/app"
        assert local.upstream.config.url == "http://127.0.0.1:5000"  # loopback: plain HTTP
        hub = mirror.route("busybox", ns="registry-1.docker.io")
        assert hub.local == "ns/docker.io/library/busybox"
        assert hub.upstream.config.url == "https://registry-1.docker.io"
        # the cache by its own name, the same upstream object
        assert mirror.route("ns/ghcr.io/org/app") == route
        assert mirror.route("ns/127.0.0.1_5000/app").upstream is local.upstream
        assert mirror.route("ns/notallowed.io/app") is None
        assert mirror.is_mirrored("ns/anything/x") and not mirror.is_mirrored("nsx/a")
        for ns in ("evil.example", "127.0.0.1:5001", "user@ghcr.io", "[::1]:5000", "a/b"):
            with pytest.raises(APIError) as refused:
                mirror.route("org/app", ns=ns)
            assert refused.value.status == 403 and refused.value.code == "DENIED"
    finally:
        mirror.close()


def test_any_upstream_allowed(tmp_path):
    mirror = Mirror(Storage(tmp_path), check(ServerConfig(tmp_path, allow_upstreams=("*",))))
    try:
        assert mirror.route("x/y", ns="Registry.Example:8443").local == (
            "ns/registry.example_8443/x/y"
        )
        with pytest.raises(APIError):
            mirror.route("x/y", ns="not a host")
    finally:
        mirror.close()
    # without an allow-list ?ns= of an unknown host is ignored (a local repository)
    mirror = Mirror(Storage(tmp_path), check(ServerConfig(tmp_path)))
    try:
        assert mirror.route("x/y", ns="ghcr.io") is None
        assert not mirror.is_mirrored("ns/ghcr.io/x")
    finally:
        mirror.close()


def test_allowed_upstreams_config(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('allow_upstreams = ["ghcr.io", "*"]\n')
    config = from_document(load_file(path), str(path), ServerConfig(Path("/r")))
    assert check(config).allow_upstreams == ("ghcr.io", "*")
    with pytest.raises(ConfigError, match="HOST"):
        check(ServerConfig(Path("/r"), allow_upstreams=("https://ghcr.io/x",)))
    with pytest.raises(ConfigError, match="ns/"):  # the prefix of the clients' caches
        check(
            ServerConfig(
                Path("/r"),
                upstreams=(parse_upstream("ns/x=https://x.io"),),
                allow_upstreams=("ghcr.io",),
            )
        )
    path.write_text('allow_upstreams = "ghcr.io"\n')
    with pytest.raises(ConfigError):
        from_document(load_file(path), str(path), ServerConfig(Path("/r")))


@pytest.mark.parametrize(
    "host,prefix",
    [
        ("ghcr.io", "ns/ghcr.io"),
        ("127.0.0.1:5000", "ns/127.0.0.1_5000"),
        ("localhost", "ns/localhost"),
    ],
)
def test_ns_cache_prefix_round_trip(host, prefix):
    assert nshosts.cache_prefix(host) == prefix
    assert names.valid_name(prefix)
    assert nshosts.host_of_prefix(prefix.split("/", 1)[1]) == host


@pytest.mark.parametrize("text", ["", "a_b.io", "-a.io", "a.io:0", "a.io:99999", "a.io/x", "[::1]"])
def test_ns_hosts_refused(text):
    assert nshosts.normalize_host(text) is None


def test_storage_settings(tmp_path):
    from dockyard.registry.server.config import parse_storage_url

    assert parse_storage_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_storage_url("s3://my.bucket") == ("my.bucket", "")
    for bad in ("s3://b", "http://bucket/x", "s3://bucket/../x", "s3://bucket/a//b", "s3://b_x/p"):
        with pytest.raises(ConfigError):
            parse_storage_url(bad)
    path = tmp_path / "r.toml"
    path.write_text(
        'storage = "s3://reg/one"\ns3_endpoint = "http://127.0.0.1:8333"\nredirect = true\n'
    )
    config = check(from_document(load_file(path), str(path), ServerConfig(tmp_path)))
    assert (config.storage, config.s3_endpoint) == ("s3://reg/one", "http://127.0.0.1:8333")
    assert config.redirect and not ServerConfig(tmp_path).redirect
    with pytest.raises(ConfigError, match="redirect needs storage"):
        check(ServerConfig(tmp_path, redirect=True))  # files on disk have no URL to give
    with pytest.raises(ConfigError, match="storage"):
        check(ServerConfig(tmp_path, s3_region="eu-west-1"))  # an S3 setting without a bucket
    with pytest.raises(ConfigError):
        check(ServerConfig(tmp_path, storage="s3://x"))
