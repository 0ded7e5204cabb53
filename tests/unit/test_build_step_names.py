"""Step lines of the build log, numbered and named as BuildKit shows them."""

from __future__ import annotations

from dockyard.builder.frontend import plan_build
from dockyard.builder.frontend.stages import StageScope
from dockyard.builder.step_names import StepNames


def step_lines(text: str, build_args: dict[str, str] | None = None) -> list[str]:
    """The lines a build of every stage of ``text`` logs (the builder's loop, no work)."""
    plan = plan_build(text, build_args=build_args or {})
    scopes: dict[int, StageScope] = {}
    lines = []
    for stage in plan.stages:
        base = scopes.get(stage.base_stage) if stage.base_stage is not None else None
        scope = plan.scope(stage, base=base)
        names = StepNames(stage, stage.triggers, len(plan.stages))
        if not stage.is_scratch and stage.base_stage is None:
            lines.append(names.base(stage.base))
        for number, instr in enumerate([*stage.triggers, *stage.instructions], 1):
            line = names.step(scope.apply(instr), scope.env, trigger=number <= len(stage.triggers))
            if line is not None:
                lines.append(line)
        scopes[stage.index] = scope
    return lines


def test_from_an_image_is_a_step_and_stages_are_named():
    # BuildKit's testStepNames
    lines = step_lines(
        "FROM busybox AS base\n"
        "WORKDIR /out\n"
        'RUN echo "base" > base\n'
        "FROM scratch\n"
        "COPY --from=base --chmod=0644 /out /out\n"
    )
    assert lines == [
        "[base 1/3] FROM docker.io/library/busybox:latest",
        "[base 2/3] WORKDIR /out",
        '[base 3/3] RUN echo "base" > base',
        "[stage-1 1/1] COPY --from=base --chmod=0644 /out /out",
    ]


def test_one_stage_is_not_named_and_config_instructions_are_not_steps():
    lines = step_lines(
        'from registry.example:5000/base:1\nENV A=1\nLABEL x=y\nrun make\nCMD ["x"]\n'
    )
    assert lines == ["[1/2] FROM registry.example:5000/base:1", "[2/2] RUN make"]


def test_numbers_are_padded_to_the_width_of_the_total():
    lines = step_lines("FROM scratch\n" + "".join(f"COPY f{i} /\n" for i in range(10)))
    assert lines[0] == "[ 1/10] COPY f0 /"
    assert lines[-1] == "[10/10] COPY f9 /"


def test_a_stage_of_no_steps_logs_nothing():
    assert step_lines("FROM scratch\nENV A=1\n") == []


def test_step_text_is_expanded_run_keeping_quotes_and_unset_variables():
    lines = step_lines(
        "FROM scratch\nARG VERSION=1.2\nENV DIR=/opt\n"
        "RUN echo \"v$VERSION\" '${DIR}' $UNSET\n"
        "COPY app-${VERSION}.tgz $DIR/\n"
        "WORKDIR ${DIR}/$VERSION\n",
        build_args={"VERSION": "2.0"},
    )
    assert lines == [
        "[1/3] RUN echo \"v2.0\" '${DIR}' $UNSET",  # single quotes: as the shell sees it
        "[2/3] COPY app-2.0.tgz /opt/",
        "[3/3] WORKDIR /opt/2.0",
    ]


def test_a_variable_holding_a_secret_is_masked():
    # BuildKit's testSecretAsEnviron: the step name shows **** for the secret variable,
    # never the value ENV gave it earlier nor the secret itself
    lines = step_lines(
        "FROM scratch\nENV SECRET_ENV=foo OTHER=bar\n"
        "RUN --mount=type=secret,id=mysecret,env=SECRET_ENV "
        '[ "$SECRET_ENV" == "pw" ] && [ ! -f /run/secrets/mysecret ] && echo $OTHER\n'
    )
    assert lines == [
        "[1/1] RUN --mount=type=secret,id=mysecret,env=SECRET_ENV "
        '[ "****" == "pw" ] && [ ! -f /run/secrets/mysecret ] && echo bar'
    ]


def test_onbuild_triggers_are_steps_of_the_child_stage():
    lines = step_lines(
        "FROM scratch AS base\nONBUILD RUN echo hi\nONBUILD ENV A=1\nFROM base\nCOPY a b\n"
    )
    assert lines == ["[stage-1 1/2] ONBUILD RUN echo hi", "[stage-1 2/2] COPY a b"]


def test_a_heredoc_run_shows_its_first_line():
    lines = step_lines("FROM scratch\nRUN <<EOF\necho a\necho b\nEOF\nRUN <<EOF\nls\nEOF\n")
    assert lines == ["[1/2] RUN <<EOF (echo a...)", "[2/2] RUN <<EOF (ls)"]
