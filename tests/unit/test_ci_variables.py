"""Variables in pipeline files: ``${NAME}`` replaced, ``$$`` a dollar, unknown names
refused when the file is loaded, with their line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dockyard.ci.images import run_name
from dockyard.ci.pipeline import PipelineError, parse_pipeline
from dockyard.ci.variables import UnknownVariable, substitute

FILE = Path(".dockyard.yml")

PIPELINE = """\
    variables: {TAG: "ci-${CI_RUN_NUMBER}", PORT: 8080}
    services:
      web: {image: "busybox:${TAG}", command: [httpd, -p, "${PORT}"]}
    steps:
      - name: image
        build: {tags: ["localhost/app:${CI_COMMIT_SHA}"]}
      - name: test
        depends_on: [image]
        image: ${BUILT_IMAGE}
        environment: {WHERE: "${CI_PIPELINE_DIR}/sub"}
        commands: ["echo $$5 $HOME $${HOME} ${CI_COMMIT_BRANCH}-${CI_EVENT}"]
      - name: untagged
        build: {context: .}
      - name: use
        depends_on: [untagged]
        image: ${BUILT_IMAGE}
"""

VALUES = {
    "CI_RUN_ID": "20261207-120000-000001",
    "CI_RUN_NUMBER": "7",
    "CI_COMMIT_SHA": "ab" * 20,
    "CI_COMMIT_BRANCH": "feature",
    "CI_EVENT": "push",
    "CI_PIPELINE_DIR": "/workspace",
}


def problems(text: str) -> list[str]:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(textwrap.dedent(text), FILE)
    return str(info.value).splitlines()


def test_built_in_and_own_variables_in_every_string():
    pipeline = parse_pipeline(textwrap.dedent(PIPELINE), FILE).with_values(VALUES)
    web = pipeline.services["web"]
    assert (str(web.image), web.command) == (
        "docker.io/library/busybox:ci-7",
        ("httpd", "-p", "8080"),
    )
    test = pipeline.step("test")
    assert str(test.image) == f"localhost/app:{'ab' * 20}"
    built = f"localhost/app:{'ab' * 20}"
    assert test.environment == {"WHERE": "/workspace/sub", "BUILT_IMAGE": built}
    assert test.commands == ("echo $5 $HOME ${HOME} feature-push",)
    assert pipeline.step("use").image == run_name(VALUES["CI_RUN_ID"], "untagged")
    own = str(run_name(VALUES["CI_RUN_ID"], "untagged"))
    assert pipeline.step("use").environment == {"BUILT_IMAGE": own}
    assert pipeline.spec.variables == {"TAG": "ci-7", "PORT": "8080"}


def test_unknown_variables_are_refused_at_load_time_with_their_line():
    assert problems(
        """\
        env: {A: "${NOPE}"}
        steps:
          - name: a
            image: busybox
            commands: [echo ok, "echo ${HOME}"]
          - name: b
            image: "busybox:${BUILT_IMAGE}"
        """
    ) == [
        ".dockyard.yml:1: env.A: unknown variable ${NOPE}",
        ".dockyard.yml:5: steps[0].commands[1]: unknown variable ${HOME}",
        ".dockyard.yml:7: steps[1].image: unknown variable ${BUILT_IMAGE}",
    ]


def test_variables_cannot_use_each_other_nor_shadow_built_ins():
    assert problems(
        """\
        variables: {A: x, B: "${A}"}
        steps: [{name: a, image: busybox}]
        """
    ) == [".dockyard.yml:1: variables.B: unknown variable ${A}"]
    assert problems(
        """\
        variables: {CI_RUN_ID: mine}
        steps: [{name: a, image: busybox}]
        """
    ) == [".dockyard.yml:1: variables: CI_RUN_ID: a built-in variable"]


def test_a_run_value_that_makes_the_file_invalid_is_named():
    pipeline = parse_pipeline(textwrap.dedent(PIPELINE), FILE)
    with pytest.raises(PipelineError) as info:
        pipeline.with_values({**VALUES, "CI_COMMIT_SHA": "not a tag!"})
    assert str(info.value).startswith(".dockyard.yml:6: steps[0].build.tags[0]: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${", "'${' is not closed"),
        ("${A B}", "'${A B}' is not a variable name"),
        ("${1A}", "'${1A}' is not a variable name"),
        ("${}", "'${}' is not a variable name"),
    ],
)
def test_malformed_references(text, message):
    with pytest.raises(UnknownVariable, match=message.replace("$", r"\$").replace("{", r"\{")):
        substitute(text, {"A": "a"})


def test_substitution_is_not_recursive():
    assert substitute("${A}$$${A}", {"A": "${A}"}) == "${A}$${A}"
