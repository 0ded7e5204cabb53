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
