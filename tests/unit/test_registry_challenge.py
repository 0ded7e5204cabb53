import pytest

from dockyard.registry.client import Challenge, parse_www_authenticate


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:samalba/my-app:pull,push"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:samalba/my-app:pull,push",
                    },
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        # Scheme and parameter names are case-insensitive; spaces around "=" and ",".
        ('BEARER Realm = "r" , Service=s', [Challenge("bearer", {"realm": "r", "service": "s"})]),
        # Escapes in quoted strings; an error parameter after a 401 with a stale token.
        (
            'Bearer realm="a\\"b",error="invalid_token"',
            [Challenge("bearer", {"realm": 'a"b', "error": "invalid_token"})],
        ),
        # Two challenges in one header, the second with an unquoted URL realm.
        (
            'Basic realm="x", Bearer realm=http://h:1/token, service="y"',
            [
                Challenge("basic", {"realm": "x"}),
                Challenge("bearer", {"realm": "http://h:1/token", "service": "y"}),
            ],
        ),
        # token68 forms carry no parameters.
        (
            "Basic dXNlcjpwYXNz==, Bearer realm=r",
            [Challenge("basic"), Challenge("bearer", {"realm": "r"})],
        ),
        ("Negotiate", [Challenge("negotiate")]),
        ("", []),
    ],
)
def test_parse(header, expected):
    assert parse_www_authenticate(header) == expected


def test_realm_property():
    assert parse_www_authenticate('Bearer realm="https://a/t"')[0].realm == "https://a/t"
    assert Challenge("basic").realm is None
