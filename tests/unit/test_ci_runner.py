"""What a run checks before it starts anything."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dockyard.ci.pipeline import parse_pipeline
from dockyard.ci.runner import RunError, RunOptions, _select

PIPELINE = """\
steps:
  - name: test
    image: busybox
    commands: [true]
  - name: image
    build: {tags: [localhost/x:1], network: host}
"""


def test_a_build_step_gets_the_host_network_only_if_the_run_allows_it():
    pipeline = parse_pipeline(textwrap.dedent(PIPELINE), Path(".dockyard.yml"))
    with pytest.raises(RunError, match=r"'image'.*--allow-host-network"):
        _select(pipeline, RunOptions())
    assert _select(pipeline, RunOptions(only=["test"])) == ["test"]
    assert _select(pipeline, RunOptions(allow_host_network=True)) == ["test", "image"]


def test_only_a_matrix_selects_every_combination_and_their_dependencies():
    pipeline = parse_pipeline(
        "steps:\n"
        "  - {name: deps, image: busybox}\n"
        "  - {name: test, image: busybox, depends_on: [deps], matrix: {PY: [a, b]}}\n"
        "  - {name: other, image: busybox}\n",
        Path(".dockyard.yml"),
    )
    assert _select(pipeline, RunOptions(only=["test"])) == ["deps", "test.PY-a", "test.PY-b"]
    assert _select(pipeline, RunOptions(only=["test.PY-b"])) == ["deps", "test.PY-b"]
    with pytest.raises(RunError, match=r"no step named 'test\.PY-c'"):
        _select(pipeline, RunOptions(only=["test.PY-c"]))


def test_services_secrets_are_needed_for_the_services_the_selected_steps_use():
    pipeline = parse_pipeline(
        "services:\n"
        "  db: {image: postgres, secrets: [DB_PASSWORD]}\n"
        "steps:\n"
        "  - {name: unit, image: busybox, services: []}\n"
        "  - {name: it, image: busybox, services: [db]}\n"
        "  - {name: own, image: busybox, services: {cache: {image: redis, secrets: [C]}}}\n",
        Path(".dockyard.yml"),
    )
    assert _select(pipeline, RunOptions(only=["unit"])) == ["unit"]
    with pytest.raises(RunError, match="secrets not given: DB_PASSWORD"):
        _select(pipeline, RunOptions(only=["it"]))
    with pytest.raises(RunError, match="secrets not given: C "):
        _select(pipeline, RunOptions(only=["own"]))
