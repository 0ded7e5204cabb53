"""The pipeline file schema: what it accepts, and errors that name file, line and field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from dockyard.ci.pipeline import PipelineError, load_pipeline, parse_duration, parse_pipeline
from dockyard.ci.variables import STAND_INS

FILE = Path(".dockyard.yml")


def parse(text: str):
    return parse_pipeline(textwrap.dedent(text), FILE)


def problems(text: str) -> list[str]:
    with pytest.raises(PipelineError) as info:
        parse(text)
    return str(info.value).splitlines()


FULL = """\
    name: demo
    env: {GLOBAL: 1, FLAG: true}
    services:
      web:
        image: 127.0.0.1:5000/tools/busybox:1
        command: [busybox, httpd, -f, -p, 8080]
        environment: {K: v}
        ready: {tcp: 8080, timeout: 30s}
      db:
        image: postgres
        ready: {command: [pg_isready], timeout: 1m}
        stop_timeout: 30s
    steps:
      - name: compile
        image: busybox
        commands: [make]
        cache: [/root/.cache/pip]
      - name: test
        image: busybox
        depends_on: [compile]
        environment: {FOO: bar}
        secrets: [API_TOKEN]
        commands: ["./run-tests --junit report.xml"]
        reports: {junit: report.xml}
        artifacts: ["dist/**"]
        timeout: 10m
        failure: ignore
        when: {status: [success, failure], branch: main, event: push}
      - name: image
        depends_on: [test]
        build:
          context: .
          dockerfile: Dockerfile
          tags: [localhost/demo:1]
          push: false
          build_args: {V: 2}
          cache_from: [localhost/demo:cache]
          cache_to: localhost/demo:cache
      - name: smoke
        depends_on: [image]
        image: localhost/demo:1
        commands: ["demo --version"]
"""


def test_the_issue_example_is_accepted():
    pipeline = parse(FULL)
    assert pipeline.spec.env == {"GLOBAL": "1", "FLAG": "true"}
    web = pipeline.services["web"]
    assert web.command == ("busybox", "httpd", "-f", "-p", "8080")
    assert web.ready is not None and (web.ready.tcp, web.ready.timeout) == (8080, 30.0)
    assert str(web.image) == "127.0.0.1:5000/tools/busybox:1"
    db = pipeline.services["db"].ready
    assert db is not None and db.command == ("pg_isready",) and db.timeout == 60.0
    assert (web.stop_timeout, pipeline.services["db"].stop_timeout) == (10.0, 30.0)
    test = pipeline.step("test")
    assert test.timeout == 600.0
    assert test.failure == "ignore"
    assert test.when.status == ("success", "failure")
    assert test.when.branch == ("main",)
    assert test.reports.junit == ("report.xml",)
    build = pipeline.step("image").build
    assert build is not None
    assert [str(t) for t in build.tags] == ["localhost/demo:1"]
    assert build.build_args == {"V": "2"}
    assert pipeline.cache_key == "demo"
    assert pipeline.graph.order == ["compile", "test", "image", "smoke"]


def test_steps_by_name():
    text = "steps: [" + ", ".join(f"{{name: s{i}, image: busybox}}" for i in range(300)) + "]"
    pipeline = parse(text)
    assert [pipeline.step(f"s{i}").name for i in range(300)] == [s.name for s in pipeline.steps]
    with pytest.raises(KeyError):
        pipeline.step("s300")
    values = {"CI_EVENT": "push", "CI_RUN_ID": "x", "CI_RUN_NUMBER": "2"}
    valued = pipeline.with_values({**STAND_INS, **values})
    assert valued.step("s7") is valued.steps[7]  # its own steps, not the stand-ins'


def test_defaults():
    step = parse("steps: [{name: a, image: busybox}]").step("a")
    assert step.commands == ()
    assert step.when.status == ("success",)
    assert step.failure == "fail"
    assert step.timeout is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("30s", 30.0),
        ("1h30m", 5400.0),
        ("1.5m", 90.0),
        ("250ms", 0.25),
        ("7d", 604800.0),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10x", "", "m", "-1s", "0", True, "1 h"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_error_names_file_line_and_field():
    text = """\
        steps:
          - name: a
            image: busybox
          - name: b
            image: busybox
          - name: c
            image: busybox
            commands: [true]
            timeout: 10x
    """
    assert problems(text) == [".dockyard.yml:9: steps[2].timeout: invalid duration '10x'"]


def test_unknown_fields_are_errors_at_their_line():
    text = """\
        steps:
          - name: a
            image: busybox
            comands: [make]
        services:
          web: {image: busybox, port: 80}
        extra: 1
    """
    assert problems(text) == [
        ".dockyard.yml:4: steps[0].comands: unknown field",
        ".dockyard.yml:6: services.web.port: unknown field",
        ".dockyard.yml:7: extra: unknown field",
    ]


def test_missing_fields_point_at_their_parent():
    assert problems("steps:\n  - image: busybox\n") == [
        ".dockyard.yml:2: steps[0].name: required field missing"
    ]
    assert problems("env: {}\n") == [".dockyard.yml:1: steps: required field missing"]


def test_dependencies_must_exist_and_not_cycle():
    text = """\
        steps:
          - name: a
            image: busybox
            depends_on: [nope]
    """
    assert problems(text) == [".dockyard.yml:4: steps[0].depends_on[0]: no step is named 'nope'"]
    text = """\
        steps:
          - {name: a, image: busybox, depends_on: [c]}
          - {name: b, image: busybox, depends_on: [a]}
          - {name: c, image: busybox, depends_on: [b]}
    """
    assert problems(text) == [
        ".dockyard.yml:2: steps[0].depends_on: dependency cycle: a -> c -> b -> a"
    ]


def test_step_names_are_unique_and_safe():
    text = """\
        steps:
          - {name: a, image: busybox}
          - {name: a, image: busybox}
          - {name: ../x, image: busybox}
    """
    assert problems(text) == [
        ".dockyard.yml:4: steps[2].name: invalid name '../x': letters, digits, '_', '.', '-'; "
        "63 at most",
    ]
    assert problems("steps:\n  - {name: a, image: busybox}\n  - {name: a, image: busybox}\n") == [
        ".dockyard.yml:3: steps[1].name: step name 'a' is used twice"
    ]


def test_step_kinds():
    assert problems("steps:\n  - name: a\n    commands: [make]\n") == [
        ".dockyard.yml:2: steps[0]: a step needs image (to run commands), build or check"
    ]
    text = """\
        steps:
          - name: a
            image: busybox
            build: {context: .}
    """
    assert problems(text) == [".dockyard.yml:2: steps[0]: a build step cannot have image"]


def test_check_steps():
    pipeline = parse(
        """\
        steps:
          - {name: image, build: {tags: [localhost/app:ci]}}
          - name: gate
            depends_on: [image]
            check: {image: localhost/app:ci, policy: ci/gate.yml}
        """
    )
    gate = pipeline.step("gate")
    assert gate.check is not None and gate.check.policy == "ci/gate.yml"
    assert str(gate.check.image) == "localhost/app:ci"
    assert gate.uses({"db": None}) == ()  # a check waits for no service
    text = """\
        steps:
          - {name: image, build: {tags: [localhost/app:ci]}}
          - name: gate
            check: {image: localhost/app:ci, policy: ../gate.yml}
          - name: late
            check: {image: localhost/app:ci}
          - name: both
            image: busybox
            check: {image: busybox}
          - name: mixed
            build: {}
            check: {image: busybox}
          - name: what
            check: {image: busybox, rules: [user]}
    """
    assert problems(text) == [
        ".dockyard.yml:4: steps[1].check.policy: "
        "'../gate.yml': expected a relative path inside the workspace",
        ".dockyard.yml:7: steps[3]: a check step cannot have image",
        ".dockyard.yml:10: steps[4]: a step cannot have both build and check",
        ".dockyard.yml:14: steps[5].check.rules: unknown field",
    ]
    text = """\
        steps:
          - {name: image, build: {tags: [localhost/app:ci]}}
          - name: gate
            check: {image: localhost/app:ci}
    """
    assert problems(text) == [
        ".dockyard.yml:4: steps[1].check.image: localhost/app:ci is built by step "
        "'image': add it to depends_on"
    ]


def test_a_cache_is_shared_unless_locked():
    text = """\
        steps:
          - {name: a, image: busybox, cache: [/c]}
          - {name: b, image: busybox, cache: {paths: [/c], sharing: locked}}
          - {name: c, image: busybox, cache: {paths: [/c], sharing: private}}
    """
    assert problems(text) == [
        ".dockyard.yml:4: steps[2].cache.sharing: Input should be 'shared' or 'locked'"
    ]
    pipeline = parse(text.replace("private", "locked"))
    assert [s.cache_locked for s in pipeline.steps] == [False, True, True]


def test_paths_and_names():
    text = """\
        services:
          Web_1: {image: busybox}
        steps:
          - name: a
            image: busybox
            cache: [relative]
            artifacts: [../out]
            secrets: [not-a-var]
            when: {status: [maybe]}
    """
    assert problems(text) == [
        ".dockyard.yml:2: services.Web_1: invalid service name 'Web_1': it must be a valid "
        "hostname",
        ".dockyard.yml:6: steps[0].cache[0]: 'relative': expected an absolute path below /",
        ".dockyard.yml:7: steps[0].artifacts[0]: '../out': expected a relative path inside "
        "the workspace",
        ".dockyard.yml:8: steps[0].secrets[0]: invalid variable name 'not-a-var'",
        ".dockyard.yml:9: steps[0].when.status[0]: Input should be 'success' or 'failure'",
    ]


def test_images_are_checked():
    assert problems("steps:\n  - {name: a, image: 'Upper/Case'}\n")[0].startswith(
        ".dockyard.yml:2: steps[0].image: invalid reference 'Upper/Case'"
    )


def test_ready_needs_exactly_one_check():
    text = """\
        services:
          web:
            image: busybox
            ready: {timeout: 5s}
        steps: [{name: a, image: b}]
    """
    assert problems(text) == [
        ".dockyard.yml:4: services.web.ready: give exactly one of tcp and command"
    ]


def test_a_built_image_is_used_only_after_its_build():
    text = """\
        steps:
          - {name: build, build: {tags: [localhost/app:1]}}
          - {name: use, image: localhost/app:1}
    """
    assert problems(text) == [
        ".dockyard.yml:3: steps[1].image: localhost/app:1 is built by step 'build': "
        "add it to depends_on"
    ]


def test_yaml_problems():
    assert problems("steps:\n  - name: a\n    name: b\n    image: x\n") == [
        ".dockyard.yml:3: duplicate key 'name'"
    ]
    assert problems("- a\n") == [".dockyard.yml:1: expected a mapping with steps"]
    assert problems("a: &x [*x]\n") == [".dockyard.yml:1: recursive alias"]


def test_merge_keys_bring_anchored_fields():
    pipeline = parse(
        """\
        env: &env {GLOBAL: "1", LEVEL: "pipeline"}
        steps:
          - &base
            name: a
            image: busybox
            environment: {A: "1"}
            timeout: 1m
          - <<: *base
            name: b
            environment: {<<: *env, LEVEL: step}
          - <<: [{name: first, timeout: 2m}, *base, {cache: [/root/.cache]}]
            image: alpine
        """
    )
    a, b, c = pipeline.steps
    assert (b.name, str(b.image), b.timeout) == ("b", str(a.image), 60.0)
    assert b.environment == {"GLOBAL": "1", "LEVEL": "step"}  # replaced, not merged deeply
    assert (c.name, c.timeout, c.environment) == ("first", 120.0, {"A": "1"})
    assert (str(c.image), c.cache) == ("docker.io/library/alpine:latest", ("/root/.cache",))


def test_merged_fields_are_named_at_the_line_that_wrote_them():
    assert problems(
        """\
        steps:
          - &base
            name: a
            image: busybox
            timeout: soon
          - <<: *base
            name: b
          - <<: *base
            name: c
            timeout: later
        """
    ) == [
        ".dockyard.yml:5: steps[0].timeout: invalid duration 'soon'",
        ".dockyard.yml:5: steps[1].timeout: invalid duration 'soon'",
        ".dockyard.yml:10: steps[2].timeout: invalid duration 'later'",
    ]


def test_bad_merge_keys():
    assert problems("steps:\n  - <<: 3\n    name: a\n") == [
        ".dockyard.yml:2: << must be given a mapping or a list of mappings"
    ]
    assert problems("a: &a {x: 1}\nsteps:\n  - {<<: *a, <<: *a}\n") == [
        ".dockyard.yml:3: duplicate key '<<'"
    ]
    assert problems("steps:\n  - &s {name: a, <<: *s}\n") == [".dockyard.yml:2: recursive alias"]


def test_syntax_errors_have_a_line():
    with pytest.raises(PipelineError) as info:
        parse("steps:\n  - name: a\n   image: [\n")
    assert info.value.line is not None


def test_load_names_the_file(tmp_path):
    path = tmp_path / "ci.yml"
    path.write_text("steps:\n  - {name: a, image: busybox, timeout: soon}\n")
    with pytest.raises(PipelineError) as info:
        load_pipeline(path)
    assert str(info.value) == f"{path}:2: steps[0].timeout: invalid duration 'soon'"
    assert (info.value.file, info.value.line) == (str(path), 2)
    with pytest.raises(PipelineError, match="cannot read"):
        load_pipeline(tmp_path / "missing.yml")


def test_cache_key_defaults_to_the_file(tmp_path):
    path = tmp_path / ".dockyard.yml"
    path.write_text("steps: [{name: a, image: busybox}]\n")
    assert load_pipeline(path).cache_key == str(path)


@pytest.mark.parametrize(
    ("when", "branch", "event", "failed", "reason"),
    [
        ({}, None, "manual", False, ""),
        ({}, None, "manual", True, "an earlier step failed"),
        ({"status": ["failure"]}, None, "manual", False, "nothing failed"),
        ({"status": ["failure"]}, None, "manual", True, ""),
        ({"status": ["success", "failure"]}, None, "manual", True, ""),
        ({"branch": ["main", "release/*"]}, "release/1.2", "push", False, ""),
        ({"branch": "main"}, "dev", "push", False, "branch dev does not match when.branch"),
        ({"branch": "main"}, None, "push", False, "branch (unknown) does not match when.branch"),
        ({"event": "push"}, "main", "manual", False, "event manual does not match when.event"),
    ],
)
def test_when(when, branch, event, failed, reason):
    step = parse(f"steps: [{{name: a, image: busybox, when: {json.dumps(when)}}}]").step("a")
    assert step.when.skip_reason(branch=branch, event=event, upstream_failed=failed) == reason


def test_build_network():
    def build_network(fields: str):
        return parse(f"steps: [{{name: b, build: {{{fields}}}}}]").step("b").build.network

    assert build_network("") == "default"
    assert build_network("network: host") == "host"
    assert build_network("network: none") == "none"
    with pytest.raises(PipelineError, match="network"):
        build_network("network: bridge")


def test_workdir_is_an_absolute_path_of_command_steps():
    assert parse("steps: [{name: a, image: busybox, workdir: /}]").step("a").workdir == "/"
    assert problems("steps: [{name: a, image: busybox, workdir: app}]") == [
        ".dockyard.yml:1: steps[0].workdir: 'app': expected an absolute path"
    ]
    assert problems("steps: [{name: a, build: {}, workdir: /app}]") == [
        ".dockyard.yml:1: steps[0]: a build step cannot have workdir"
    ]


def test_retry_conditions():
    step = parse(
        "steps: [{name: a, image: busybox, retry: {count: 2, when: [{exit_code: 137}, timeout]}}]"
    ).step("a")
    assert step.retry is not None
    assert step.retry.matches("failure", 137) and step.retry.matches("timeout", None)
    assert not step.retry.matches("failure", 1) and not step.retry.matches("cancelled", None)
    default = parse("steps: [{name: a, image: busybox, retry: {count: 1}}]").step("a").retry
    assert default is not None and default.matches("failure", 1)
    assert problems("steps: [{name: a, image: busybox, retry: {count: 0}}]") == [
        ".dockyard.yml:1: steps[0].retry.count: Input should be greater than or equal to 1"
    ]


MATRIX = """\
    steps:
      - name: compile
        image: busybox
      - name: test
        matrix: {PY: ["3.11", 3.12], OS: [debian, "a b"]}
        image: "python:${PY}"
        depends_on: [compile]
        environment: {WHERE: "${OS}/$${PY}"}
        commands: ["echo ${PY} on ${OS}"]
      - name: publish
        depends_on: [test]
        image: busybox
        timeout: 10x
"""


def test_a_matrix_makes_one_step_per_combination_named_after_its_values():
    pipeline = parse(MATRIX.replace("10x", "10s"))
    names = ["test.PY-3.11.OS-debian", "test.PY-3.11.OS-a_b", "test.PY-3.12.OS-debian"]
    names.append("test.PY-3.12.OS-a_b")
    assert [s.name for s in pipeline.steps] == ["compile", *names, "publish"]
    assert pipeline.matrices == {"test": tuple(names)}
    step = pipeline.step("test.PY-3.12.OS-a_b")
    assert (str(step.image), step.commands) == (
        "docker.io/library/python:3.12",
        ("echo 3.12 on a b",),
    )
    assert step.environment == {"WHERE": "a b/${PY}", "PY": "3.12", "OS": "a b"}
    assert pipeline.dependencies(step) == ("compile",)
    # depending on the matrix is waiting for every combination
    assert pipeline.graph.awaits["publish"] == frozenset(names)


def test_errors_after_a_matrix_name_the_lines_as_written():
    assert problems(MATRIX) == [".dockyard.yml:13: steps[2].timeout: invalid duration '10x'"]
    assert problems(MATRIX.replace('${PY}"', '${NOPE}"', 1)) == [
        ".dockyard.yml:6: steps[1].image: unknown variable ${NOPE}"
    ]
    assert problems(MATRIX.replace("10x", "10s").replace("[compile]", "[test]", 1)) == [
        ".dockyard.yml:7: steps[1].depends_on[0]: a step cannot depend on itself"
    ]


def test_matrix_problems():
    assert problems(
        """\
        steps:
          - name: test
            image: busybox
            matrix:
              PY: []
              CI_RUN_ID: [1]
              bad-name: [1]
              Q: [1, 1, {a: 1}]
          - {name: test, image: busybox}
        """
    ) == [
        ".dockyard.yml:5: steps[0].matrix.PY: needs at least one value",
        ".dockyard.yml:6: steps[0].matrix.CI_RUN_ID: already a variable of the pipeline",
        ".dockyard.yml:7: steps[0].matrix.bad-name: invalid variable name 'bad-name'",
        ".dockyard.yml:8: steps[0].matrix.Q[1]: '1' is given twice",
        ".dockyard.yml:8: steps[0].matrix.Q[2]: expected a string, number or boolean",
    ]
    assert problems(
        """\
        steps:
          - {name: test, image: busybox, matrix: {A: [1, 2]}}
          - {name: test, image: busybox}
        """
    ) == [".dockyard.yml:3: steps[1].name: step name 'test' is used twice"]
    assert problems(
        "steps: [{name: t, image: busybox, matrix: {A: [1]}, environment: {A: 2}}]"
    ) == [".dockyard.yml:1: steps[0].environment.A: A is also a matrix variable"]
    assert problems(
        "steps: [{name: t, image: busybox, matrix: {A: [1, 2], B: [3]}, timeout: 0}]"
    ) == [".dockyard.yml:1: steps[0].timeout: invalid duration 0"]
    many = ", ".join(f"V{i}: [1, 2]" for i in range(7))
    assert problems(f"steps: [{{name: t, image: busybox, matrix: {{{many}}}}}]") == [
        ".dockyard.yml:1: steps[0].matrix: 128 combinations: at most 64"
    ]


def test_step_services_name_the_pipelines_or_define_their_own():
    pipeline = parse(
        """\
        services:
          db: {image: postgres, secrets: [DB_PASSWORD]}
          web: {image: busybox}
        steps:
          - {name: default, image: busybox}
          - {name: named, image: busybox, services: [db]}
          - {name: one, image: busybox, services: web}
          - {name: none, image: busybox, services: []}
          - {name: offline, image: busybox, network: none}
          - {name: image, build: {}}
          - name: own
            image: busybox
            services: {db: {image: "postgres:16", ready: {tcp: 5432}}}
        """
    )
    services = pipeline.services
    assert services["db"].secrets == ("DB_PASSWORD",)
    uses = {step.name: step.uses(services) for step in pipeline.steps}
    assert uses == {
        "default": ("db", "web"),
        "named": ("db",),
        "one": ("web",),
        "none": (),
        "offline": (),
        "image": (),
        "own": (),
    }
    assert str(pipeline.step("own").own_services["db"].image) == "docker.io/library/postgres:16"


def test_step_service_problems():
    assert problems(
        """\
        services:
          app: {image: "localhost/app:1"}
        steps:
          - {name: image, build: {tags: [localhost/app:1]}}
          - {name: a, image: busybox, services: [nope]}
          - {name: b, image: busybox, services: {web: {image: "localhost/app:1"}}}
          - {name: c, image: busybox, network: none, services: [app]}
          - {name: d, build: {}, services: [app]}
        """
    ) == [
        ".dockyard.yml:7: steps[3]: a step with network: none has no services",
        ".dockyard.yml:8: steps[4]: a build step cannot have services",
    ]
    assert problems(
        """\
        services:
          app: {image: "localhost/app:1"}
        steps:
          - {name: image, build: {tags: [localhost/app:1]}}
          - {name: a, image: busybox, services: [nope]}
          - {name: b, image: busybox, services: {web: {image: "localhost/app:1"}}}
        """
    ) == [
        ".dockyard.yml:2: services.app.image: localhost/app:1 is built by step 'image': make "
        "it the service of a step that depends on it",
        ".dockyard.yml:5: steps[1].services[0]: no service is named 'nope'",
        ".dockyard.yml:6: steps[2].services.web.image: localhost/app:1 is built by step "
        "'image': add it to depends_on",
    ]


def test_retry_on_service_failure():
    step = parse(
        "steps: [{name: a, image: busybox, retry: {count: 1, when: [service_failure]}}]"
    ).step("a")
    assert step.retry is not None
    assert step.retry.matches("failure", None, service_failed=True)
    assert not step.retry.matches("failure", 1) and not step.retry.matches("timeout", None)


def test_labels_add_up_and_may_not_contradict():
    pipeline = parse(
        """
        labels: {arch: amd64}
        steps:
          - {name: a, image: busybox, labels: {gpu: true}}
          - {name: b, image: busybox, labels: {arch: amd64}}
        """
    )
    assert pipeline.labels == {"arch": "amd64", "gpu": "true"}
    pipeline.check_labels({"arch": "amd64", "pool": "ci"})
    with pytest.raises(PipelineError) as raised:
        pipeline.check_labels({"arch": "arm64"})
    assert [p.format("f") for p in raised.value.problems] == [
        "f:2: labels.arch: arch=amd64: this repository's runs need arch=arm64",
        "f:5: steps[1].labels.arch: arch=amd64: this repository's runs need arch=arm64",
    ]
    assert problems(
        """
        labels: {arch: amd64}
        steps:
          - {name: a, image: busybox, labels: {arch: arm64}}
        """
    ) == [
        ".dockyard.yml:4: steps[0].labels.arch: arch=arm64, but the pipeline asks for "
        "arch=amd64: one agent runs the whole pipeline"
    ]
    assert problems("steps: [{name: a, image: busybox, labels: {'a b': x}}]") == [
        ".dockyard.yml:1: steps[0].labels.a b: invalid label name 'a b': letters, digits, "
        "'.', '_', '/', '-'"
    ]
