"""The one exception hierarchy: one NotFound for every home, one base for errors that
point into a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard import yamlmarks
from dockyard.builder.copier.sources import RootfsTree, glob
from dockyard.check.policy import PolicyError, parse_policy
from dockyard.ci.pipeline import PipelineError, parse_pipeline
from dockyard.errors import (
    BuildError,
    DockyardError,
    InvalidFile,
    LocatedError,
    NotFound,
    Problem,
    RegistryError,
    StoreError,
)
from dockyard.layout.oci_dir import LayoutDestination, LayoutSource
from dockyard.reference import parse
from dockyard.registry.client.errors import response_error
from dockyard.store import Store
from tests.support.sample_images import copy_by_hand, sample_image


def test_every_home_says_not_found_the_same_way(tmp_path: Path) -> None:
    copy_by_hand(sample_image(), LayoutDestination(tmp_path / "layout", "v1"))
    tree = RootfsTree(tmp_path)
    try:
        missing = [
            lambda: Store(tmp_path / "store").resolve(parse("busybox:1")),
            lambda: LayoutSource(tmp_path / "layout", "v2"),
            lambda: glob(tree, "/no-such-dir/*.txt"),
        ]
        for look in missing:
            with pytest.raises(NotFound):
                look()
    finally:
        tree.close()
    registry_404 = response_error("h", "library/busybox:1", 404)
    assert isinstance(registry_404, NotFound) and isinstance(registry_404, RegistryError)
    assert not isinstance(response_error("h", "x", 500), NotFound)


def test_a_missing_image_is_not_a_broken_store() -> None:
    assert not issubclass(NotFound, StoreError)
    assert issubclass(NotFound, DockyardError)


def test_located_errors_read_file_colon_line() -> None:
    error = LocatedError("unknown instruction: NOPE", "Dockerfile", 3)
    assert str(error) == "Dockerfile:3: unknown instruction: NOPE"
    assert (error.file, error.line, error.message) == ("Dockerfile", 3, "unknown instruction: NOPE")
    assert str(LocatedError("empty", "Dockerfile")) == "Dockerfile: empty"
    assert str(LocatedError("bad", None, 7)) == "bad"  # no file: the caller names it
    assert isinstance(BuildError("x", "Dockerfile", 1), LocatedError)


def test_pipeline_and_policy_errors_are_file_errors_not_build_errors() -> None:
    with pytest.raises(PipelineError) as pipeline:
        parse_pipeline("steps:\n  - name: a\n    image: busybox\n    timeout: 10x\n", Path("p.yml"))
    with pytest.raises(PolicyError) as policy:
        parse_policy("user: {allow_root: false}\nsevere: {}\n", "gate.yml")
    for error in (pipeline.value, policy.value):
        assert isinstance(error, InvalidFile) and isinstance(error, LocatedError)
        assert not isinstance(error, BuildError)
    assert (pipeline.value.file, pipeline.value.line) == ("p.yml", 4)
    assert str(pipeline.value) == "p.yml:4: steps[0].timeout: invalid duration '10x'"
    assert (policy.value.file, policy.value.line) == ("gate.yml", 2)
    assert str(policy.value) == "gate.yml:2: severe: unknown rule"


def test_invalid_file_lists_every_problem_one_per_line() -> None:
    error = InvalidFile("f.yml", [Problem("a", "first", 2), Problem("", "second", None)])
    assert str(error) == "f.yml:2: a: first\nf.yml: second"
    assert (error.line, error.message) == (2, "a: first")


def test_yaml_errors_carry_their_line() -> None:
    with pytest.raises(yamlmarks.YamlError) as info:
        yamlmarks.load("a: 1\na: 2\n")
    assert isinstance(info.value, LocatedError)
    assert (info.value.line, str(info.value)) == (2, "duplicate key 'a'")
