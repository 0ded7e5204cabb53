"""Frozen values (``dockyard.frozen``) behave as the frozen dataclasses they replaced."""

from __future__ import annotations

import copy
import pickle

import pytest

from dockyard.frozen import Frozen, FrozenError
from dockyard.oci.config import ImageConfig
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.oci.home import RawManifest
from dockyard.reference import parse
from dockyard.registry.client.client import RegistryManifest

DIGEST = "sha256:" + "ab" * 32


def test_equal_values_are_equal_and_hash_alike_and_other_types_never_equal():
    assert parse("busybox") == parse("docker.io/library/busybox:latest")
    assert len({parse("busybox"), parse("busybox:latest"), parse("busybox:1")}) == 2
    assert parse("busybox") != ("docker.io", "library/busybox", "latest", None)
    assert Platform() == Platform("linux", "amd64") != Platform("linux", "arm64")


def test_uncompared_fields_are_left_out_of_equality_and_hash_but_shown():
    plain = Descriptor("m", DIGEST, 3)
    annotated = Descriptor("m", DIGEST, 3, {"a": "b"})
    assert plain == annotated and hash(plain) == hash(annotated)
    assert plain.annotations == {}
    assert plain.annotations is not Descriptor("m", DIGEST, 3).annotations  # a dict each
    assert repr(annotated) == (
        f"Descriptor(media_type='m', digest='{DIGEST}', size=3, annotations={{'a': 'b'}},"
        " platform=None, urls=(), artifact_type=None)"
    )


def test_fields_cannot_be_assigned_or_deleted():
    ref = parse("busybox")
    with pytest.raises(FrozenError):
        ref.tag = "1"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del ref.tag
    with pytest.raises(AttributeError):
        ref.other = 1  # type: ignore[attr-defined]
    assert ref.tag == "latest"


def test_replace_makes_a_copy_and_refuses_unknown_fields():
    ref = parse("busybox")
    assert ref.with_digest(DIGEST) == parse(f"busybox:latest@{DIGEST}")
    assert ref.replace(tag="1") == parse("busybox:1") and ref.tag == "latest"
    with pytest.raises(TypeError, match="no field 'tags'"):
        ref.replace(tags="1")


def test_a_subclass_has_its_bases_fields_first_and_copies_and_pickles():
    manifest = RegistryManifest(b"{}", "m", DIGEST)
    assert repr(manifest) == f"RegistryManifest(data=b'{{}}', media_type='m', digest='{DIGEST}')"
    assert manifest.replace(digest="x").data == b"{}"
    for again in (pickle.loads(pickle.dumps(manifest)), copy.deepcopy(manifest)):
        assert again == manifest and type(again) is RegistryManifest


def test_slots_must_name_the_annotated_fields_and_one_be_compared():
    with pytest.raises(TypeError, match="__slots__ must name"):

        class Bad(Frozen):
            __slots__ = ("a",)
            a: int
            b: int

    with pytest.raises(TypeError, match="no field to compare"):

        class Blind(Frozen):
            __slots__ = ("a",)
            _uncompared = frozenset({"a"})
            a: int


def test_a_value_of_one_field_compares_and_hashes_by_it():
    assert ImageConfig({"os": "linux"}) == ImageConfig({"os": "linux"}) != ImageConfig({})
    with pytest.raises(TypeError, match="unhashable"):
        hash(ImageConfig({}))  # a dict field, as with a frozen dataclass
    raw = RawManifest(b"{}", "m")
    assert raw == RawManifest(b"{}", "m") != RawManifest(b"{}", "n")
    assert hash(raw) == hash(RawManifest(b"{}", "m"))


def test_init_sets_fields_by_name_so_their_order_cannot_swap_them():
    class Pair(Frozen):
        __slots__ = ("left", "right")
        left: str
        right: int

        def __init__(self, right: int, left: str) -> None:  # not in field order
            self._set(right=right, left=left)

    class Broken(Frozen):
        __slots__ = ("left", "right")
        left: str
        right: int

        def __init__(self, left: str) -> None:
            self._set(left=left, rigth=0)

    pair = Pair(1, "a")
    assert (pair.left, pair.right) == ("a", 1)
    assert copy.deepcopy(pair) == pair == pair.replace(left="a") != pair.replace(right=2)
    with pytest.raises(TypeError, match="rigth"):
        Broken("a")
