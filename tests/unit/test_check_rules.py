"""``dockyard check``'s rules on hand-made images in a store: each planted problem is
found with its rule, layer and path, and a clean image gives no finding."""

from __future__ import annotations

import json
import tarfile

import pytest

from dockyard.check.image import open_image
from dockyard.check.policy import PolicyError, parse_policy
from dockyard.check.rules.secrets import scan
from dockyard.check.run import check_image
from dockyard.check.versions import compare, parse_constraint
from tests.unit.check_images import FAKE_KEY, F, d, layer, store_image, whiteout

BASE = [layer(d("/bin"), F("/bin/sh", b"\x7fELF\0shell", 0o755), d("/etc"), d("/tmp", 0o1777))]


def run(store_root, name, policy_text, **kw):
    def opener(text):
        return open_image(text, store_root=store_root)

    policy = parse_policy(policy_text, "policy.yml")
    return check_image(opener(name), policy, opener)


def found(result):
    return [(f.rule, f.layer.number if f.layer else None, f.path) for f in result.findings]


def test_private_key_in_a_deleted_file_is_found_with_its_layer(store_root):
    name = store_image(
        store_root,
        "localhost/t/key:1",
        [
            *BASE,
            layer(d("/root"), F("/root/deploy_key", FAKE_KEY, 0o600)),
            layer(whiteout("/root/deploy_key")),
        ],
    )
    result = run(store_root, name, "secrets: {}\n")
    assert found(result) == [("secrets", 2, "/root/deploy_key")]
    assert result.findings[0].message == "private key"
    assert result.findings[0].deleted_in == 3
    assert result.failed


def test_a_key_in_a_deleted_directory_is_marked_deleted_too(store_root):
    tars = [
        *BASE,
        layer(d("/srv"), F("/srv/app/.env", b"API_TOKEN=ghp_" + b"a1B2" * 9 + b"\n")),
        layer(whiteout("/srv")),
    ]
    result = run(store_root, store_image(store_root, "localhost/t/env:1", tars), "secrets: {}\n")
    assert found(result) == [("secrets", 2, "/srv/app/.env")]
    assert result.findings[0].message == "GitHub token"
    assert {f.deleted_in for f in result.findings} == {3}


def test_secret_in_an_allowed_path_or_a_binary_is_not_read(store_root):
    tars = [
        *BASE,
        layer(
            d("/docs"),
            F("/docs/example.pem", FAKE_KEY),
            F("/bin/tool", b"\0\x01" + FAKE_KEY, 0o755),
        ),
    ]
    result = run(
        store_root,
        store_image(store_root, "localhost/t/ok:1", tars),
        "secrets: {allow: ['/docs/*']}\n",
    )
    assert found(result) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        (b"aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n", ["AWS access key ID"]),
        (b'{"auths": {"r.io": {"auth": "dXNlcjpwYXNzd29yZA=="}}}', ["registry login"]),
        (b"glpat-abcdefghij0123456789\n", ["GitLab token"]),
        (b"DB_PASSWORD='hunter2'\n", []),  # a word, not a generated secret
        (b"token: ${CI_JOB_TOKEN}\n", []),
        (
            b"password = 'Zx9vQ2mLp8Rt4Wk7Yb3N'\n",
            ["high-entropy string assigned to a secret-like name"],
        ),
        (b"md5sum: 9e107d9d372bb6826bd81d3542a419d6\n", []),
    ],
)
def test_secret_detectors(text, expected):
    assert scan(text) == expected


def test_setuid_root_user_and_missing_label(store_root):
    tars = [
        *BASE,
        layer(
            d("/usr"),
            d("/usr/bin"),
            F("/usr/bin/su-ish", b"x", 0o4755),
            F("/usr/bin/passwd", b"x", 0o4755),
            F("/data", b"", 0o666),
        ),
    ]
    name = store_image(store_root, "localhost/t/suid:1", tars, {"Labels": {"team": "x"}})
    result = run(
        store_root,
        name,
        "user: {}\n"
        "labels: {required: {org.opencontainers.image.source: '^https://', team: null}}\n"
        "files: {setuid_allowed: [/usr/bin/passwd], forbidden: ['*.pem']}\n",
    )
    assert found(result) == [
        ("user", None, None),
        ("labels", None, None),
        ("files", 2, "/usr/bin/su-ish"),
        ("files", 2, "/data"),
    ]
    assert [f.message for f in result.findings] == [
        "no USER: runs as root",
        "label org.opencontainers.image.source is missing",
        "setuid file (mode 4755)",
        "world-writable file (mode 0666)",
    ]


def test_user_by_name_is_looked_up_in_the_final_passwd(store_root):
    passwd = b"root:x:0:0::/root:/bin/sh\napp:x:0:0::/app:/bin/sh\n"
    fixed = b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"
    tars = [*BASE, layer(F("/etc/passwd", passwd))]
    bad = store_image(store_root, "localhost/t/u:1", tars, {"User": "app"})
    assert found(run(store_root, bad, "user: {}\n")) == [("user", 2, "/etc/passwd")]
    good = store_image(
        store_root, "localhost/t/u:2", [*tars, layer(F("/etc/passwd", fixed))], {"User": "app:app"}
    )
    assert found(run(store_root, good, "user: {}\n")) == []
    numeric = store_image(store_root, "localhost/t/u:3", BASE, {"User": "1000"})
    assert found(run(store_root, numeric, "user: {}\n")) == []


def test_wrong_base_names_the_first_foreign_layer(store_root):
    base = store_image(store_root, "localhost/t/base:1", BASE)
    other = store_image(store_root, "localhost/t/other:1", [layer(F("/other", b"1"))])
    good = store_image(store_root, "localhost/t/app:1", [*BASE, layer(F("/app", b"1"))])
    bad = store_image(store_root, "localhost/t/app:2", [layer(F("/x", b"1")), *BASE])
    policy = f"base: {{allowed: [{other}, {base}]}}\n"
    assert found(run(store_root, good, policy)) == []
    result = run(store_root, bad, policy)
    assert found(result) == [("base", 1, None)]


def test_config_rules(store_root):
    runtime = {
        "Env": ["PATH=/bin", "GITHUB_TOKEN=x", "db_password=y"],
        "ExposedPorts": {"8080/tcp": {}, "22/tcp": {}, "53/udp": {}},
    }
    name = store_image(store_root, "localhost/t/cfg:1", BASE, runtime)
    policy = (
        "config:\n  forbidden_env: ['*_TOKEN', '*PASSWORD*']\n  require_healthcheck: true\n"
        "  allowed_ports: [8000-8100, 53/udp]\n  severity: warning\n"
    )
    result = run(store_root, name, policy)
    assert [f.message for f in result.findings] == [
        "environment variable GITHUB_TOKEN matches forbidden '*_TOKEN'",
        "environment variable db_password matches forbidden '*PASSWORD*'",
        "no HEALTHCHECK",
        "exposed port 22/tcp is not allowed",
    ]
    assert not result.failed  # warnings only


def test_size_and_layers(store_root):
    name = store_image(store_root, "localhost/t/big:1", [*BASE, layer(F("/big", bytes(300_000)))])
    result = run(store_root, name, "max_size: {uncompressed: 200kB}\nmax_layers: {max: 1}\n")
    assert [f.rule for f in result.findings] == ["max_size", "max_layers"]
    assert "over 195.3 KiB" in result.findings[0].message


DPKG = b"""Package: openssl
Status: install ok installed
Version: 3.0.11-1~deb12u2

Package: telnet
Status: deinstall ok config-files
Version: 0.17-44

Package: libc6
Status: install ok installed
Version: 2.36-9+deb12u4
"""


def test_packages_from_the_final_dpkg_database(store_root):
    tars = [
        *BASE,
        layer(d("/var"), d("/var/lib"), d("/var/lib/dpkg"), F("/var/lib/dpkg/status", DPKG)),
    ]
    name = store_image(store_root, "localhost/t/deb:1", tars)
    policy = "packages: {deny: ['openssl <3.0.13', telnet, 'libc6 >=2.37']}\n"
    result = run(store_root, name, policy)
    assert found(result) == [("packages", 2, "/var/lib/dpkg/status")]
    assert "openssl 3.0.11-1~deb12u2" in result.findings[0].message
    gone = store_image(store_root, "localhost/t/deb:2", [*tars, layer(whiteout("/var/lib/dpkg"))])
    assert found(run(store_root, gone, policy)) == []


def test_apk_database(store_root):
    apk = b"C:Q1abc\nP:busybox\nV:1.36.1-r2\n\nP:musl\nV:1.2.4-r1\n"
    tars = [
        *BASE,
        layer(d("/lib"), d("/lib/apk"), d("/lib/apk/db"), F("/lib/apk/db/installed", apk)),
    ]
    name = store_image(store_root, "localhost/t/apk:1", tars)
    result = run(store_root, name, "packages: {deny: ['busybox <1.36.1-r5']}\n")
    assert [f.message for f in result.findings] == [
        "package busybox 1.36.1-r2 is denied (busybox <1.36.1-r5)"
    ]


@pytest.mark.parametrize(
    "a, b, order",
    [
        ("1.0", "1.0", 0),
        ("1.0~rc1", "1.0", -1),
        ("1:0.9", "2.0", 1),
        ("2.36-9+deb12u4", "2.36-9", 1),
        ("3.0.11-1~deb12u2", "3.0.11-1", -1),
        ("1.10", "1.9", 1),
        ("1.0a", "1.0", 1),
    ],
)
def test_debian_version_order(a, b, order):
    assert compare(a, b) == order
    assert compare(b, a) == -order


def test_policy_errors_name_file_and_line():
    text = (
        "user: {}\nsecrets:\n  allow: [relative/path]\n"
        "files: {forbiden: []}\nmax_size: {compressed: big}\n"
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "gate.yml")
    assert str(caught.value).splitlines() == [
        "gate.yml:3: secrets.allow[0]: 'relative/path': a path glob starts with / or *",
        "gate.yml:4: files.forbiden: unknown field",
        "gate.yml:5: max_size.compressed: invalid size 'big': expected bytes or e.g. 200MB, 1GiB",
    ]
    with pytest.raises(PolicyError, match=r"gate.yml:1: severe: unknown rule"):
        parse_policy("severe: {}\n", "gate.yml")
    with pytest.raises(PolicyError, match=r"gate.yml:2: packages.deny\[0\]: invalid version"):
        parse_policy("packages:\n  deny: ['openssl ~3']\n", "gate.yml")


def test_constraint_parsing():
    c = parse_constraint("libssl3 >=3.0.0, <3.0.7")
    assert c.matches("libssl3", "3.0.5-1") and not c.matches("libssl3", "3.0.7")


def test_cli_formats_and_exit_code(store_root, tmp_path):
    from tests.conftest import Dockyard

    name = store_image(
        store_root,
        "localhost/t/cli:1",
        [*BASE, layer(d("/root"), F("/root/id_rsa", FAKE_KEY, 0o600))],
    )
    policy = tmp_path / "policy.yml"
    policy.write_text("secrets: {}\nuser: {severity: warning}\n")
    dockyard = Dockyard(store_root)
    text = dockyard("check", "--policy", str(policy), name, check=False)
    assert text.returncode == 1
    assert text.stdout.decode().splitlines() == [
        f"{name}: warning: user: config: no USER: runs as root",
        f"{name}: error: secrets: layer 2 (sha256:{layer_digest(store_root, name)}) /root/id_rsa:"
        " private key",
        f"{name}: FAIL (1 errors, 1 warnings)",
    ]
    doc = json.loads(
        dockyard("check", "--policy", str(policy), "--format", "json", name, check=False).stdout
    )
    assert doc[0]["findings"][1]["path"] == "/root/id_rsa"
    junit = dockyard(
        "check", "--policy", str(policy), "--format", "junit", name, check=False
    ).stdout
    assert b'<testcase classname="localhost/t/cli:1" name="secrets">' in junit
    assert junit.count(b"<failure ") == 1
    policy.write_text("user: {severity: warning}\n")
    assert dockyard("check", "--policy", str(policy), name).returncode == 0
    policy.write_text("user:\n  allow_roots: true\n")
    bad = dockyard("check", "--policy", str(policy), name, check=False)
    assert bad.returncode == 1
    assert (
        bad.stderr.decode().strip()
        == f"dockyard: error: {policy}:2: user.allow_roots: unknown field"
    )


def layer_digest(store_root, name, number=2):
    image = open_image(name, store_root=store_root)
    return image.layers[number - 1].descriptor.digest.split(":")[1][:12]


def test_hardlinks_and_symlinks_are_not_read_as_content(store_root):
    tars = [
        *BASE,
        layer(
            F("/etc/key", FAKE_KEY),
            F("/etc/key2", kind=tarfile.LNKTYPE, link="/etc/key"),
            F("/etc/key3", kind=tarfile.SYMTYPE, link="/etc/key"),
        ),
    ]
    result = run(store_root, store_image(store_root, "localhost/t/links:1", tars), "secrets: {}\n")
    assert found(result) == [("secrets", 2, "/etc/key")]
