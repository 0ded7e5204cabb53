"""The stage graph: ARG scoping, build-args, platforms, dependencies, --target."""

from __future__ import annotations

import pytest

from dockyard.builder.frontend import Platform, plan_build
from dockyard.builder.frontend.commands import Arg, Copy, Run
from dockyard.builder.frontend.stages import BuildPlan, Stage, StageScope
from dockyard.errors import BuildError
from dockyard.oci.config import DEFAULT_PATH

AMD64 = Platform("linux", "amd64")
ARM = Platform("linux", "arm", "v7")


def plan(text: str, **kw) -> BuildPlan:
    kw.setdefault("build_platform", AMD64)
    return plan_build(text, **kw)


def run_stage(p: BuildPlan, stage: Stage, image_env=(), base: StageScope | None = None):
    """Apply every instruction; return the scope and the expanded instructions."""
    scope = p.scope(stage, image_env, base)
    done = [scope.apply(i) for i in (*stage.triggers, *stage.instructions)]
    return scope, done


def test_global_args_only_reach_from() -> None:
    p = plan(
        "ARG REPO=library\nARG TAG=3.19\nARG IMAGE=$REPO/alpine:$TAG\n"
        "FROM $IMAGE\nARG TAG\nARG REPO=mine\nENV SEEN=${TAG}-${REPO}-${IMAGE:-unset}\n"
    )
    (stage,) = p.stages
    assert stage.base == "library/alpine:3.19"
    assert p.global_args["IMAGE"] == "library/alpine:3.19"
    scope, _ = run_stage(p, stage)
    # TAG re-declared without a value takes the global one; REPO has its own default;
    # IMAGE was never declared in the stage
    assert scope.env["SEEN"] == "3.19-mine-unset"


def test_build_args_override_declared_args_only() -> None:
    text = (
        "ARG V=1\nFROM alpine:$V\nARG V\nARG W=default\nARG X\n"
        "RUN echo\nENV OUT=$V-$W-$X-${NOTDECLARED:-none}\n"
    )
    p = plan(text, build_args={"V": "2", "W": "cli", "NOTDECLARED": "z"})
    (stage,) = p.stages
    assert stage.base == "alpine:2"
    scope, done = run_stage(p, stage)
    assert scope.env["OUT"] == "2-cli--none"
    assert "NOTDECLARED" not in scope.env
    assert [str(w) for w in p.warnings] == [
        "One or more build-args [NOTDECLARED] were not consumed"
    ]
    assert done[0].created_by() == "ARG V=2"
    assert done[2].created_by() == "ARG X"
    run = done[3]
    assert run.created_by(run.command_line()[0], scope.history_args()) == (
        "RUN |3 V=2 W=cli X= /bin/sh -c echo # buildkit"
    )


def test_arg_default_expansion_is_sequential_and_env_wins_in_history() -> None:
    p = plan("FROM a\nARG A=1 B=${A}2\nENV A=env\nRUN x\n")
    scope, done = run_stage(p, p.stages[0])
    assert [(d.key, d.value) for d in done[0].args] == [("A", "1"), ("B", "12")]
    assert scope.history_args() == [("A", "env"), ("B", "12")]
    assert scope.config_env == {"PATH": DEFAULT_PATH, "A": "env"}  # ARGs stay out of config


def test_arg_scope_per_stage_and_inheritance() -> None:
    p = plan(
        "FROM a AS one\nARG X=1\nENV E=e\n"
        "FROM one AS two\nENV SEEN=$X-$E\n"
        "FROM a AS three\nENV SEEN=${X:-none}-${E:-none}\n"
    )
    one, two, three = p.stages
    one_scope, _ = run_stage(p, one, ["PATH=/bin"])
    two_scope, _ = run_stage(p, two, base=one_scope)
    three_scope, _ = run_stage(p, three, ["PATH=/bin"])
    assert two_scope.env["SEEN"] == "1-e"  # a stage built FROM another keeps its ARGs
    assert two_scope.history_args() == [("X", "1")]
    assert three_scope.env["SEEN"] == "none-none"
    assert one_scope.config_env == {"PATH": "/bin", "E": "e"}
    with pytest.raises(ValueError):
        p.scope(two)  # needs the base stage's scope


def test_image_env_and_default_path() -> None:
    p = plan("FROM a\nENV B=${HOME}/x\n")
    scope, _ = run_stage(p, p.stages[0], ["HOME=/root", "NOVALUE"])
    assert scope.config_env == {
        "HOME": "/root",
        "NOVALUE": "",
        "PATH": DEFAULT_PATH,
        "B": "/root/x",
    }


def test_proxy_args() -> None:
    text = "FROM a\nRUN undeclared\nARG http_proxy\nRUN declared\n"
    p = plan(text, build_args={"HTTP_PROXY": "http://a", "https_proxy": "http://b", "no_proxy": ""})
    assert not p.warnings  # proxies are builtin: never "not consumed"
    scope = p.scope(p.stages[0])
    run = p.stages[0].instructions[0]
    scope.apply(run)
    assert scope.history_args() == []  # undeclared: not in history or cache key
    env = scope.run_env()
    assert (env["HTTP_PROXY"], env["http_proxy"], env["HTTPS_PROXY"]) == ("http://a",) * 2 + (
        "http://b",
    )
    assert "NO_PROXY" not in env
    scope.apply(p.stages[0].instructions[1])
    assert scope.history_args() == [("http_proxy", "")]  # declared, but its name differs
    assert p.proxy_env["http_proxy"] == "http://a"


def test_platform_args() -> None:
    p = plan(
        "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETARCH TARGETVARIANT\n"
        "ENV OUT=$TARGETARCH/$TARGETVARIANT/${BUILDARCH:-undeclared}\n"
        "FROM alpine:${TARGETARCH}\n",
        platform=ARM,
    )
    build, final = p.stages
    assert build.platform == AMD64
    assert final.base == "alpine:arm"
    assert p.global_args["TARGETPLATFORM"] == "linux/arm/v7"
    assert p.global_args["BUILDPLATFORM"] == "linux/amd64"
    assert p.global_args["TARGETSTAGE"] == "default"
    scope, _ = run_stage(p, build)
    assert scope.env["OUT"] == "arm/v7/undeclared"


def test_target_stage_arg_and_platform_defaults_to_build_platform() -> None:
    p = plan("FROM a AS x\nFROM b AS y\n", target="X")
    assert p.global_args["TARGETSTAGE"] == "X"
    assert p.platform == p.build_platform == AMD64


def test_stage_graph_dependencies_and_levels() -> None:
    p = plan(
        "FROM golang AS deps\n"  # 0
        "FROM deps AS build\nCOPY --from=assets /a /a\nRUN --mount=from=DEPS,target=/d x\n"  # 1
        "FROM node AS assets\n"  # 2 (used by 1, defined later: an error when built)
        "FROM alpine AS tools\nCOPY --from=busybox:1.36 /bin/busybox /bin/\n"  # 3
        "FROM scratch\nCOPY --from=0 /go /go\nCOPY --from=tools /bin /bin\n"  # 4
        "RUN --mount=type=cache,target=/c --mount=from=ubuntu,target=/u true\n"
    )
    stages = p.stages
    assert [s.id for s in stages] == ["deps", "build", "assets", "tools", "stage-4"]
    assert stages[1].base_stage == 0 and stages[1].depends_on == (0, 2)
    assert stages[3].images == ("busybox:1.36",)
    assert stages[4].is_scratch
    assert stages[4].depends_on == (0, 3)
    assert stages[4].images == ("ubuntu",)
    assert [s.id for s in p.order] == ["deps", "tools", "stage-4"]
    assert [[s.id for s in level] for level in p.levels] == [["deps", "tools"], ["stage-4"]]
    assert p.source_stage("0") is stages[0]
    assert p.source_stage("TOOLS") is stages[3]
    assert p.source_stage("busybox:1.36") is None
    assert p.source_stage("0", by_index=False) is None


def test_misspelt_target_gets_a_suggestion() -> None:
    text = "FROM a AS build\nFROM b AS test\nFROM c\n"
    with pytest.raises(BuildError) as info:
        plan(text, target="bulid")
    assert str(info.value) == (
        'Dockerfile: target stage "bulid" could not be found (did you mean build?)'
    )
    with pytest.raises(BuildError) as info:
        plan(text, target="release")
    assert str(info.value) == 'Dockerfile: target stage "release" could not be found'


def test_target_selects_needed_stages() -> None:
    text = "FROM a AS base\nFROM base AS test\nRUN t\nFROM base AS release\nFROM release\n"
    p = plan(text, target="Test")
    assert p.target.id == "test"
    assert [s.id for s in p.order] == ["base", "test"]
    assert [s.id for s in plan(text).order] == ["base", "release", "stage-3"]


@pytest.mark.parametrize(
    ("text", "kw", "message", "line"),
    [
        (
            "FROM a AS x\nFROM b\n",
            {"target": "nope"},
            'target stage "nope" could not be found',
            None,
        ),
        ("FROM a AS x\nRUN y\nFROM b AS X\n", {}, 'Duplicate stage name "x"', 3),
        ("RUN x\nFROM a\n", {}, "no build stage in current context", 1),
        ("ARG A\n", {}, "dockerfile contains no stages to build", None),
        ("ARG B=\nFROM ${B}\n", {}, "base name (${B}) should not be blank", 2),
        ("FROM a:${X\n", {}, "missing '}'", 1),
        ("FROM --platform=$NOPE a\n", {}, "empty platform value from expression $NOPE", 1),
        ("FROM --platform=linux/amd64/v3/x a\n", {}, "failed to parse platform", 1),
        ("FROM Builder\n", {}, 'failed to parse stage name "Builder"', 1),  # FROM is case-sensitive
        (
            "FROM a AS b\nFROM c\nCOPY --from=$X / /\n",
            {},
            "variable expansion is not supported for --from",
            3,
        ),
        ("FROM a\nCOPY --from=5 / /\n", {}, "invalid stage index 5", 2),
        (
            "FROM a AS x\nCOPY \\\n  --from=X / /\n",
            {},
            "circular dependency detected on stage: x",
            2,
        ),
        (
            "FROM a AS x\nCOPY --from=y / /\nFROM b AS y\nRUN --mount=from=x,target=/x t\n",
            {"target": "y"},
            "circular dependency detected on stage: x",
            2,
        ),
        (
            "FROM a\nCOPY --from=later / /\nFROM b AS later\nFROM c\nCOPY --from=0 / /\n",
            {},
            'cannot copy from stage "later", it needs to be defined before current stage "stage-0"',
            2,
        ),
        (
            "FROM a\nRUN --mount=from=later,target=/l x\nFROM b AS later\n"
            "FROM c\nCOPY --from=0 / /\n",
            {},
            "cannot mount from stage",
            2,
        ),
        ("FROM a\nCOPY --from=Not/Valid / /\n", {}, 'failed to parse stage name "Not/Valid"', 2),
    ],
)
def test_graph_errors(text: str, kw: dict, message: str, line: int | None) -> None:
    with pytest.raises(BuildError) as info:
        plan(text, **kw)
    assert message in str(info.value)
    assert info.value.line == line


def test_forward_reference_of_an_unbuilt_stage_is_fine() -> None:
    text = "FROM a AS first\nCOPY --from=later / /\nFROM b AS later\n"
    assert plan(text, target="later").target.id == "later"
    with pytest.raises(BuildError, match="needs to be defined before"):
        plan(text, target="first")


def test_errors_only_for_needed_stages_and_warnings() -> None:
    p = plan(
        "ARG DECLARED\nFROM ${UNDECLARED:-a}:${DECLARED:-1} AS context\n"
        "FROM a AS unused\nCOPY --from=x/Y:1 / /\nFROM b\n",
        build_args={"B": "1", "A": "2"},
    )
    assert [(w.message, w.line) for w in p.warnings] == [
        ("FROM argument 'UNDECLARED' is not declared", 2),
        ('"context" is reserved and should not be used as a stage name', 2),
        ("One or more build-args [A B] were not consumed", None),
    ]


def test_onbuild_triggers_of_base_stages() -> None:
    p = plan(
        "FROM alpine AS base\nONBUILD COPY --from=assets . /app\nONBUILD RUN echo $V\n"
        "FROM node AS assets\n"
        "FROM base\nARG V=1\n"
    )
    base, _, child = p.stages
    assert [type(t) for t in child.triggers] == [Copy, Run]
    assert all(t.line == 5 for t in child.triggers)  # located at the FROM line
    assert child.depends_on == (0, 1)
    assert [s.id for s in p.order] == ["base", "assets", "stage-2"]
    assert base.triggers == ()


def test_bad_onbuild_trigger_fails_only_when_used() -> None:
    text = "FROM a AS base\nONBUILD COPY onlyone\nFROM b AS other\nFROM base AS user\n"
    assert plan(text, target="other").target.id == "other"
    with pytest.raises(BuildError) as info:
        plan(text)
    assert info.value.line == 4
    assert "COPY requires at least two arguments" in str(info.value)


def test_image_triggers() -> None:
    p = plan("FROM onbuild-image\n\nRUN x\n")
    triggers = p.image_triggers(p.stages[0], ["RUN make", "COPY . /src"])
    assert [type(t).__name__ for t in triggers] == ["Run", "Copy"]
    assert {t.line for t in triggers} == {1}
    with pytest.raises(BuildError) as info:
        p.image_triggers(p.stages[0], ["FROM x"])
    assert info.value.line == 1
    with pytest.raises(BuildError, match="unknown instruction: NOPE"):
        p.image_triggers(p.stages[0], ["NOPE x"])


def test_instructions_keep_their_types() -> None:
    p = plan("FROM a\nARG X\nRUN y\n")
    assert [type(i) for i in p.stages[0].instructions] == [Arg, Run]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("linux/aarch64", Platform("linux", "arm64")),
        ("linux/arm", Platform("linux", "arm")),
        ("linux/arm/7", Platform("linux", "arm", "v7")),
        ("linux/armhf", Platform("linux", "arm")),  # v7 is arm's default: dropped
        ("Linux/AMD64", Platform("linux", "amd64")),
        ("windows/amd64", Platform("windows", "amd64")),
    ],
)
def test_platform_parse(spec: str, expected: Platform) -> None:
    assert Platform.parse(spec) == expected


def test_platform_parse_errors_and_single_words() -> None:
    host = Platform.host()
    assert Platform.parse("linux") == Platform("linux", host.architecture, host.variant)
    assert Platform.parse("arm64") == Platform(host.os, "arm64")
    for bad in ("linux/*", "nope", "a b/c", "linux/amd64/v2/x"):
        with pytest.raises(ValueError):
            Platform.parse(bad)
    assert str(Platform("linux", "arm", "v7")) == "linux/arm/v7"
    assert str(AMD64) == "linux/amd64"
