"""manifest_checks: the JSON depth check (no recursion, strings do not count) and the
media type rules, on bytes alone."""

from __future__ import annotations

import json
import time

import pytest

from dockyard.errors import ManifestError
from dockyard.oci import mediatypes as mt
from dockyard.registry.server.manifest_checks import MAX_MANIFEST_SIZE, check, check_depth


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [0, 1, 5, 64])
def test_depth_within_the_limit_passes(depth):
    check_depth(nested(depth))


@pytest.mark.parametrize("raw", [nested(65), b"[" * 100_000 + b"]" * 100_000, b"[[[", b"[}"])
def test_too_deep_or_unbalanced_fails(raw):
    with pytest.raises(ManifestError, match="nested deeper"):
        check_depth(raw)


def test_brackets_inside_strings_do_not_count():
    text = '[{"k": "' + "[" * 1000 + '\\"{{{" , "v": "]]]\\\\"}]'
    assert json.loads(text)  # valid JSON, depth 2
    check_depth(text.encode())


def test_a_depth_bomb_of_the_largest_size_is_refused_quickly():
    bomb = b"[" * (MAX_MANIFEST_SIZE // 2) + b"]" * (MAX_MANIFEST_SIZE // 2)
    started = time.thread_time()  # CPU time: the same on a loaded machine as on an idle one
    with pytest.raises(ManifestError):
        check_depth(bomb)
    assert time.thread_time() - started < 5


def test_check_takes_the_type_from_the_header_or_the_document():
    doc = {"schemaVersion": 2, "manifests": []}
    assert check(json.dumps(doc).encode(), mt.OCI_INDEX).media_type == mt.OCI_INDEX
    typed = json.dumps({**doc, "mediaType": mt.DOCKER_MANIFEST_LIST}).encode()
    assert check(typed, None).media_type == mt.DOCKER_MANIFEST_LIST
    with pytest.raises(ManifestError, match="does not match"):
        check(typed, mt.OCI_INDEX)
    with pytest.raises(ManifestError, match="type is unknown"):
        check(json.dumps(doc).encode(), None)
