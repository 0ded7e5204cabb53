import json

import pytest

from dockyard.errors import AuthError, NotFound, RegistryError, RegistryNotFound
from dockyard.registry.client.errors import parse_error_body, response_error


def body(*errors: dict) -> bytes:
    return json.dumps({"errors": list(errors)}).encode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            body({"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}}),
            [("MANIFEST_UNKNOWN", "manifest unknown")],
        ),
        (
            body({"code": "DENIED"}, {"message": "only a message"}),
            [("DENIED", ""), ("", "only a message")],
        ),
        (body({"code": 5, "message": None}, "junk"), [("", "")]),
        (b"<html>502 Bad Gateway</html>", []),
        (b'{"errors": "nope"}', []),
        (b"[1, 2]", []),
        (b"\xff\xfe", []),
        (b"", []),
    ],
)
def test_parse_error_body(raw, expected):
    assert parse_error_body(raw) == expected


def test_one_line_with_registry_what_status_and_code():
    err = response_error(
        "127.0.0.1:5000",
        "library/foo:1",
        404,
        body({"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}),
    )
    assert type(err) is RegistryNotFound  # a RegistryError that generic code sees as NotFound
    assert isinstance(err, RegistryError) and isinstance(err, NotFound)
    assert str(err) == (
        "registry 127.0.0.1:5000: manifest unknown: library/foo:1 (404 MANIFEST_UNKNOWN)"
    )
    assert (err.status, err.code) == (404, "MANIFEST_UNKNOWN")


def test_several_errors_are_joined_and_codes_stand_in_for_messages():
    err = response_error(
        "h",
        "r@sha256:x",
        400,
        body(
            {"code": "BLOB_UNKNOWN", "message": "blob unknown"},
            {"code": "SIZE_INVALID"},
            {"code": "BLOB_UNKNOWN", "message": "blob unknown"},
        ),
    )
    assert str(err) == "registry h: blob unknown; size invalid: r@sha256:x (400 BLOB_UNKNOWN)"
    assert "\n" not in str(err)


def test_without_an_error_body_the_status_speaks():
    err = response_error("h", "GET /v2/", 503, b"<html>busy</html>")
    assert str(err) == "registry h: service unavailable: GET /v2/ (503)"
    assert (err.status, err.code) == (503, None)
    assert type(err) is RegistryError  # only a 404 is a NotFound
    assert str(response_error("h", "x", 599)) == "registry h: unexpected answer: x (599)"


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_auth_errors(status):
    err = response_error("h", "a/b:1", status, body({"code": "DENIED", "message": "denied"}))
    assert isinstance(err, AuthError)
    assert str(err) == f"registry h: denied: a/b:1 ({status} DENIED)"
