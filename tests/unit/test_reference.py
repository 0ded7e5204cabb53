import pytest

from dockyard.errors import InvalidReference
from dockyard.reference import is_loopback_host, parse, parse_repository

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("index.docker.io/user/app:v1", "docker.io", "user/app", "v1", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/a/b/c:t", "localhost:5000", "a/b/c", "t", None),
        ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", "latest", None),
        ("quay.io/org/app@" + DIGEST, "quay.io", "org/app", None, DIGEST),
        ("quay.io/org/app:v2@" + DIGEST, "quay.io", "org/app", "v2", DIGEST),
        ("[::1]:5000/app:x", "[::1]:5000", "app", "x", None),
        ("ghcr.io/a_b/c--d.e__f:tag.1-x", "ghcr.io", "a_b/c--d.e__f", "tag.1-x", None),
    ],
)
def test_parse_valid(text, registry, repository, tag, digest):
    ref = parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    # What we print parses back to the same reference.
    assert parse(str(ref)) == ref


@pytest.mark.parametrize(
    "text",
    [
        "",
        " busybox",
        "Busybox",
        "app:",
        "app:-bad",
        "app@sha256:short",
        "a//b",
        "a/-b",
        "host:port/x",
        "quay.io/" + "a" * 300,
    ],
)
def test_parse_invalid_names_the_input(text):
    with pytest.raises(InvalidReference) as err:
        parse(text)
    assert repr(text) in str(err.value)


def test_identifier_prefers_digest():
    assert parse("quay.io/a:t@" + DIGEST).identifier == DIGEST
    assert parse("quay.io/a:t").identifier == "t"


def test_docker_hub_api_host():
    assert parse("busybox").api_host == "registry-1.docker.io"
    assert parse("quay.io/a").api_host == "quay.io"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.3.2.1", True),
        ("[::1]:5000", True),
        ("quay.io", False),
        ("10.0.0.1:5000", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback(host, loopback):
    assert is_loopback_host(host) is loopback


def test_parse_repository_refuses_tags():
    assert parse_repository("127.0.0.1:5000/a/b").tag is None
    with pytest.raises(InvalidReference):
        parse_repository("127.0.0.1:5000/a/b:tag")
