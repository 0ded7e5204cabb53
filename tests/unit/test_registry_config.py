"""registries.toml, and how a client picks HTTP, HTTPS or unverified HTTPS for a host."""

import httpx
import pytest

from dockyard.errors import RegistryError
from dockyard.registry.client import RegistryClient
from dockyard.registry.client import config as registries

TOML = """
[[registry]]
location = "lan.example:5000"
insecure = true

[[registry]]
location = "*.corp.example"
insecure = true

[[registry]]
location = "secure.corp.example"
insecure = false

[[registry]]
location = "quay.io"
"""


def test_parse_and_match():
    conf = registries.parse(TOML)
    assert conf.insecure("lan.example:5000")
    assert not conf.insecure("lan.example")  # the port is part of the location
    assert conf.insecure("a.corp.example") and conf.insecure("b.a.corp.example:443")
    assert not conf.insecure("secure.corp.example")  # exact beats wildcard
    assert not conf.insecure("corp.example")
    assert not conf.insecure("quay.io") and conf.entry("quay.io") is not None
    assert conf.entry("docker.io") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[registry]\n", "invalid TOML"),
        ("registry = 1\n", "array of tables"),
        ("[[registry]]\ninsecure = true\n", r"registry\[0\] needs a 'location'"),
        ('[[registry]]\nlocation = "a"\ninsecure = "yes"\n', "boolean 'insecure'"),
    ],
)
def test_invalid_files_are_named(text, message):
    with pytest.raises(RegistryError, match=f"^my.toml: .*{message}"):
        registries.parse(text, "my.toml")


def test_first_file_found_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKYARD_CONFIG_DIR", raising=False)
    user = tmp_path / "home/.config/dockyard/registries.toml"
    assert registries.config_files() == [user, registries.SYSTEM_FILE]
    user.parent.mkdir(parents=True)
    user.write_text('[[registry]]\nlocation = "home.example"\ninsecure = true\n')
    assert registries.load().insecure("home.example")

    monkeypatch.setenv("DOCKYARD_CONFIG_DIR", str(tmp_path / "cfg"))
    assert registries.config_files()[0] == tmp_path / "cfg/registries.toml"
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg/registries.toml").write_text(TOML)
    assert registries.load().insecure("lan.example:5000")
    assert not registries.load().insecure("home.example")


def test_the_file_is_parsed_once_until_it_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_CONFIG_DIR", str(tmp_path))
    path = tmp_path / "registries.toml"
    path.write_text(TOML)
    first = registries.load()
    assert registries.load() is first  # not read again
    path.write_text(TOML.replace("lan.example", "lab.example"))  # in place, same size
    changed = registries.load()
    assert changed.insecure("lab.example:5000") and not changed.insecure("lan.example:5000")
    assert registries.load() is changed
    replacement = tmp_path / "new.toml"
    replacement.write_text('[[registry]]\nlocation = "x.example"\ninsecure = true\n')
    replacement.replace(path)  # as editors and atomic writers do
    assert registries.load().insecure("x.example")
    path.unlink()
    assert registries.load() == registries.RegistriesConfig()


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_CONFIG_DIR", str(tmp_path))
    (tmp_path / "registries.toml").write_text(TOML)


def test_loopback_is_plain_http_unless_told(config_dir):
    assert RegistryClient("127.0.0.1:5000").base_url == "http://127.0.0.1:5000"
    assert RegistryClient("localhost").base_url == "http://localhost"
    assert RegistryClient("[::1]:5000", tls_verify=False).base_url == "http://[::1]:5000"
    assert RegistryClient("127.0.0.1:5000", tls_verify=True).base_url == "https://127.0.0.1:5000"


def test_other_hosts_are_https(config_dir):
    assert RegistryClient("quay.io").base_url == "https://quay.io"


@pytest.mark.parametrize("how", ["config", "argument"])
def test_insecure_hosts_try_https_then_fall_back_to_http(config_dir, how):
    """The probe meets a plain HTTP server, which fails the TLS handshake (injected)."""
    probes = []

    def answer(request: httpx.Request) -> httpx.Response:
        probes.append(str(request.url))
        if request.url.scheme == "https":
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number")
        return httpx.Response(200)

    host = "lan.example:5000" if how == "config" else "other.example"
    client = RegistryClient(
        host, tls_verify=None if how == "config" else False, transport=httpx.MockTransport(answer)
    )
    assert client.base_url == f"http://{host}"
    assert client.base_url == f"http://{host}"  # probed once
    assert probes == [f"https://{host}/v2/"]


def test_insecure_https_registries_stay_https(config_dir):
    transport = httpx.MockTransport(lambda request: httpx.Response(401))
    client = RegistryClient("a.corp.example", transport=transport)
    assert client.base_url == "https://a.corp.example"


def test_client_for_shares_one_client_per_host(config_dir):
    from dockyard.reference import parse
    from dockyard.registry.client import api_host, client_for

    hub = client_for(parse("busybox"))
    assert hub.host == "registry-1.docker.io" == api_host("docker.io")
    assert client_for("index.docker.io") is hub
    assert client_for(parse("quay.io/a/b:1")) is client_for("quay.io")
    assert client_for("quay.io", tls_verify=False) is not client_for("quay.io")


MIRRORS = """
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "mirror.lan:5000/hub/"
insecure = true
[[registry.mirror]]
location = "pinned.lan"
pull-from-mirror = "digest-only"

[[registry]]
location = "quay.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "quay-mirror.lan"
"""


def test_mirrors_are_parsed_in_order_with_their_pull_rules():
    conf = registries.parse(MIRRORS)
    hub, pinned = conf.mirrors("docker.io")
    assert (hub.host, hub.namespace, hub.tls_verify) == ("mirror.lan:5000", "hub", False)
    assert hub.serves(by_digest=True) and hub.serves(by_digest=False)
    assert (pinned.namespace, pinned.tls_verify) == ("", None)
    assert pinned.serves(by_digest=True) and not pinned.serves(by_digest=False)
    (quay,) = conf.mirrors("quay.io")
    assert quay.pull_from_mirror == "digest-only"  # from mirror-by-digest-only
    assert conf.mirrors("ghcr.io") == ()


@pytest.mark.parametrize(
    ("mirror", "message"),
    [
        ("insecure = true", "'location' must be"),
        ('location = "a b"', "'location' must be"),
        ('location = "m"\npull-from-mirror = "never"', "'pull-from-mirror' must be one of"),
        ('location = "m"\ninsecure = 1', "'insecure' must be a boolean"),
    ],
)
def test_invalid_mirrors_are_named(mirror, message):
    text = f'[[registry]]\nlocation = "docker.io"\n[[registry.mirror]]\n{mirror}\n'
    with pytest.raises(
        RegistryError, match=rf"^my.toml: registry\[0\] \(docker.io\): mirror\[0\]: {message}"
    ):
        registries.parse(text, "my.toml")


def test_digest_only_registry_refuses_a_mirror_for_tags():
    text = MIRRORS.replace(
        'location = "quay-mirror.lan"', 'location = "q"\npull-from-mirror = "all"'
    )
    with pytest.raises(RegistryError, match="contradicts"):
        registries.parse(text)


@pytest.mark.parametrize(
    ("option", "host", "location", "tls_verify"),
    [
        ("docker.io=http://127.0.0.1:5001", "docker.io", "127.0.0.1:5001", False),
        ("index.docker.io=https://m.lan/hub", "docker.io", "m.lan/hub", True),
        ("quay.io=m.lan:5000", "quay.io", "m.lan:5000", None),
    ],
)
def test_mirror_option(option, host, location, tls_verify):
    assert registries.parse_mirror_option(option) == (
        host,
        registries.Mirror(location, tls_verify),
    )


@pytest.mark.parametrize("option", ["docker.io", "=http://m", "a/b=http://m", "h=ftp://m", "h="])
def test_bad_mirror_option(option):
    with pytest.raises(RegistryError, match="expected HOST=URL"):
        registries.parse_mirror_option(option)


def test_command_line_mirrors_come_first(config_dir, tmp_path):
    (tmp_path / "registries.toml").write_text(MIRRORS)
    try:
        registries.use_command_line_mirrors(["docker.io=http://first.lan,quay.io=q.lan"])
        assert [m.location for m in registries.mirrors_for("docker.io")] == [
            "first.lan",
            "mirror.lan:5000/hub",
            "pinned.lan",
        ]
    finally:
        registries.use_command_line_mirrors([])
    assert len(registries.mirrors_for("docker.io")) == 2


def test_mirror_credentials_follow_the_credential_scope(config_dir, tmp_path):
    """A pipeline's scope without host logins gives a mirror no credentials of the host's
    (issue 10); a mirror's own credentials in the scope are used; the source registry's
    are never sent to the mirror."""
    from dockyard.reference import parse
    from dockyard.registry.client import Credentials, CredentialScope
    from dockyard.registry.client.factory import ANONYMOUS
    from dockyard.registry.client.mirrors import MirroredSource, registry_source

    (tmp_path / "registries.toml").write_text(
        '[[registry]]\nlocation = "src.lan"\n'
        '[[registry.mirror]]\nlocation = "m1.lan"\n[[registry.mirror]]\nlocation = "m2.lan"\n'
    )
    given = {"src.lan": Credentials("u", "p"), "m2.lan": Credentials("mu", "mp")}
    scope = CredentialScope(given, host_credentials=False)
    with scope.active():
        source = registry_source(parse("src.lan/app:1"))
    scope.close()
    assert isinstance(source, MirroredSource)
    m1, m2, src = source.endpoints
    assert m1.client.auth.credentials is ANONYMOUS
    assert m2.client.auth.credentials == Credentials("mu", "mp")
    assert src.client.auth.credentials == Credentials("u", "p")
    assert [e.client.host for e in source.endpoints] == ["m1.lan", "m2.lan", "src.lan"]
