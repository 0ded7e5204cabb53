"""Typed instructions: each one's fields as parsed, its expansion with the stage's
variables (and the errors found then), and docker's history text."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import FrozenInstanceError, replace

import pytest

from dockyard.builder.frontend.commands import (
    Add,
    Arg,
    ArgDef,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    InlineSource,
    Instruction,
    KeyValue,
    Label,
    Maintainer,
    Onbuild,
    Run,
    RunScript,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
    normalize_path,
)
from dockyard.builder.frontend.parse import parse_instruction
from dockyard.builder.frontend.parser import parse
from dockyard.errors import BuildError
from tests.support.dockerfiles import ENV, one


@pytest.mark.parametrize("keyword", ["COPY", "ADD"])
@pytest.mark.parametrize("chmod", ["64a", "10000", "0o755", "8"])
def test_numeric_looking_chmod_gets_buildkits_octal_message(keyword: str, chmod: str) -> None:
    instr = one(f"{keyword} --chmod={chmod} foo /\n")
    with pytest.raises(BuildError) as info:
        instr.expand({})
    assert str(info.value) == (
        f"Dockerfile:1: invalid chmod parameter: '{chmod}'. it should be octal string and "
        "between 0 and 07777"
    )


def test_from() -> None:
    assert one("FROM --platform=$BUILDPLATFORM golang:1.22 As Build\n") == From(
        base="golang:1.22",
        name="build",
        platform="$BUILDPLATFORM",
        line=1,
        end_line=1,
        original="FROM --platform=$BUILDPLATFORM golang:1.22 As Build",
        file="Dockerfile",
    )
    assert one("from scratch\n").name is None


def test_run_shell_and_exec_forms() -> None:
    shell = one("RUN --network=none echo $HOME && make\n")
    assert isinstance(shell, Run)
    assert (shell.command, shell.shell_form, shell.network) == (
        ("echo $HOME && make",),
        True,
        "none",
    )
    exec_form = one('RUN ["echo", "$HOME"]\n')
    assert (exec_form.command, exec_form.shell_form) == (("echo", "$HOME"), False)
    # RUN is never expanded by the builder: the shell does it
    assert shell.expand(ENV).command == shell.command
    assert shell.command_line() == (["/bin/sh", "-c", "echo $HOME && make"], None)
    assert exec_form.command_line() == (["echo", "$HOME"], None)
    assert shell.command_line(["bash", "-eo", "pipefail", "-c"])[0][:3] == [
        "bash",
        "-eo",
        "pipefail",
    ]


@pytest.mark.parametrize(
    ("text", "args", "script"),
    [
        ("RUN <<EOF\necho $A\necho b\nEOF\n", ["/bin/sh", "-c", "echo $A\necho b\n"], None),
        ("RUN <<-EOF\n\techo a\nEOF\n", ["/bin/sh", "-c", "echo a\n"], None),
        (
            "RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n",
            ["/bin/sh", "-c", "/dev/pipes/EOF"],
            RunScript("/dev/pipes/EOF", "#!/usr/bin/env python3\nprint(1)\n"),
        ),
        (
            "RUN <<EOF sh -x\necho a\nEOF\n",
            ["/bin/sh", "-c", "<<EOF sh -x\necho a\nEOF"],
            None,
        ),
        (
            "RUN <<A cat <<-B\na\nA\n\tb\n\tB\n",
            ["/bin/sh", "-c", "<<A cat <<-B\na\nA\n\tb\nB"],  # the shell strips tabs itself
            None,
        ),
    ],
)
def test_run_heredocs(text: str, args: list[str], script: RunScript | None) -> None:
    run = one(text)
    assert isinstance(run, Run)
    assert run.command_line() == (args, script)


def test_run_history() -> None:
    run = one("RUN echo hi\n")
    args, _ = run.command_line()
    assert run.created_by(args, []) == "RUN /bin/sh -c echo hi # buildkit"
    assert (
        run.created_by(args, [("V", "1"), ("W", "")])
        == "RUN |2 V=1 W= /bin/sh -c echo hi # buildkit"
    )
    exec_form = one('RUN ["ls", "-l"]\n')
    assert exec_form.created_by(exec_form.command_line()[0], []) == "RUN ls -l # buildkit"


@pytest.mark.parametrize(
    ("text", "config", "history"),
    [
        ('CMD ["app", "-v"]', ["app", "-v"], 'CMD ["app" "-v"]'),
        ("CMD app -v", ["/bin/sh", "-c", "app -v"], 'CMD ["/bin/sh" "-c" "app -v"]'),
        (
            'CMD echo "hi\tthere"',
            ["/bin/sh", "-c", 'echo "hi\tthere"'],
            'CMD ["/bin/sh" "-c" "echo \\"hi\\tthere\\""]',
        ),
        ("ENTRYPOINT []", [], "ENTRYPOINT []"),
        (
            "ENTRYPOINT exec app",
            ["/bin/sh", "-c", "exec app"],
            'ENTRYPOINT ["/bin/sh" "-c" "exec app"]',
        ),
    ],
)
def test_cmd_entrypoint(text: str, config: list[str], history: str) -> None:
    instr = one(text + "\n")
    assert isinstance(instr, Cmd | Entrypoint)
    assert instr.config_value() == config
    assert instr.created_by() == history


def test_cmd_with_custom_shell() -> None:
    cmd = one("CMD Write-Host hi\n")
    assert cmd.config_value(["pwsh", "-Command"]) == ["pwsh", "-Command", "Write-Host hi"]


def test_shell() -> None:
    shell = one('SHELL ["/bin/bash", "-o", "pipefail", "-c"]\n')
    assert shell == Shell(shell=("/bin/bash", "-o", "pipefail", "-c"), **_where(shell))
    assert shell.created_by() == "SHELL [/bin/bash -o pipefail -c]"


def _where(instr: Instruction) -> dict:
    return {
        "line": instr.line,
        "end_line": instr.end_line,
        "original": instr.original,
        "file": instr.file,
    }


@pytest.mark.parametrize(
    ("text", "pairs", "history"),
    [
        ("ENV X=1", [("X", "1")], "ENV X=1"),
        (
            'ENV X="a b" Y=$A Z=${B}',
            [("X", "a b"), ("Y", "1"), ("Z", "two words")],
            "ENV X=a b Y=1 Z=two words",
        ),
        ("ENV X a b  c", [("X", "a b  c")], "ENV X=a b  c"),  # legacy form: the rest is the value
        ('ENV X "q r"', [("X", "q r")], "ENV X=q r"),
        ("ENV X='$A' Y=\\$A", [("X", "$A"), ("Y", "$A")], "ENV X=$A Y=$A"),
        ("ENV X=${UNSET:-d} Y=${EMPTY-e}", [("X", "d"), ("Y", "")], "ENV X=d Y="),
        ("ENV A=2 C=$A", [("A", "2"), ("C", "1")], "ENV A=2 C=1"),  # sees the value before
        ("ENV X=", [("X", "")], "ENV X="),
    ],
)
def test_env(text: str, pairs: list[tuple[str, str]], history: str) -> None:
    env = one(text + "\n")
    assert isinstance(env, Env)
    done = env.expand(ENV)
    assert [(p.key, p.value) for p in done.pairs] == pairs
    assert done.created_by() == history


def test_env_legacy_flag_and_label() -> None:
    assert one("ENV X a\n").pairs == (KeyValue("X", "a", legacy=True),)
    label = one('LABEL org.opencontainers.image.title="My app" version=$A\n')
    assert isinstance(label, Label)
    assert label.expand(ENV).created_by() == "LABEL org.opencontainers.image.title=My app version=1"


def test_arg_parsing() -> None:
    arg = one('ARG A B=2 C="x y" D=\n')
    assert isinstance(arg, Arg)
    assert arg.args == (ArgDef("A"), ArgDef("B", "2"), ArgDef("C", '"x y"'), ArgDef("D", ""))
    assert arg.created_by() == 'ARG A B=2 C="x y" D='


@pytest.mark.parametrize(
    ("text", "ports", "history"),
    [
        ("EXPOSE 80", ("80/tcp",), "EXPOSE [80/tcp]"),
        (
            "EXPOSE 80/tcp 53/UDP 9000-9002/sctp",
            ("53/udp", "80/tcp", "9000/sctp", "9001/sctp", "9002/sctp"),
            None,
        ),
        ("EXPOSE $PORT ${EMPTY}", ("8080/tcp",), "EXPOSE [8080/tcp]"),
        ('EXPOSE "$PORT"/udp', ("8080/udp",), None),
        ("EXPOSE 127.0.0.1:8000:80", ("80/tcp",), None),
    ],
)
def test_expose(text: str, ports: tuple[str, ...], history: str | None) -> None:
    done = one(text + "\n").expand(ENV)
    assert isinstance(done, Expose)
    assert done.ports == ports
    if history:
        assert done.created_by() == history


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("EXPOSE 80/xtp", "invalid proto: xtp"),
        ("EXPOSE 70000", "invalid containerPort: 70000"),
        ("EXPOSE 90-80", "invalid containerPort: 90-80"),
        ("EXPOSE abc", "invalid containerPort: abc"),
        ("EXPOSE /tcp", "no port specified"),
        ("EXPOSE 1.2.3:80:80", "invalid IP address"),
    ],
)
def test_expose_errors(text: str, message: str) -> None:
    with pytest.raises(BuildError) as info:
        one(text + "\n").expand(ENV)
    assert message in str(info.value)


def test_volume_user_workdir_stopsignal_maintainer() -> None:
    volume = one("VOLUME $DIR /data\n").expand(ENV)
    assert isinstance(volume, Volume)
    assert volume.volumes == ("/srv", "/data")
    assert volume.created_by() == "VOLUME [/srv /data]"
    assert one('VOLUME ["/a b", "/c"]\n').volumes == ("/a b", "/c")
    with pytest.raises(BuildError, match="empty string"):
        one("VOLUME $EMPTY\n").expand(ENV)

    user = one("USER ${U}:staff\n").expand(ENV)
    assert isinstance(user, User)
    assert user.split() == ("app", "staff")
    assert one("USER 1000\n").split() == ("1000", None)
    assert user.created_by() == "USER app:staff"

    workdir = one("WORKDIR $DIR/app\n").expand(ENV)
    assert isinstance(workdir, Workdir)
    assert workdir.resolve("/") == "/srv/app"
    relative = one("WORKDIR sub/../x\n")
    assert relative.resolve("/srv/app") == "/srv/app/x"
    assert Workdir.created_by("/srv/app/x") == "WORKDIR /srv/app/x"

    signal = one("STOPSIGNAL SIGKILL\n").expand(ENV)
    assert isinstance(signal, StopSignal)
    assert signal.created_by() == "STOPSIGNAL SIGKILL"
    for ok in ("term", "9", "SIGRTMIN+3", "RTMAX"):
        one(f"STOPSIGNAL {ok}\n").expand(ENV)
    for bad in ("SIGFOO", "0"):
        with pytest.raises(BuildError, match="invalid signal"):
            one(f"STOPSIGNAL {bad}\n").expand(ENV)

    maintainer = one("MAINTAINER Jane Doe <jane@example.com>\n")
    assert isinstance(maintainer, Maintainer)
    assert maintainer.maintainer == "Jane Doe <jane@example.com>"
    assert maintainer.expand(ENV) is maintainer
    assert maintainer.created_by() == "MAINTAINER Jane Doe <jane@example.com>"


@pytest.mark.parametrize(
    ("parent", "path", "keep", "expected"),
    [
        ("/", "app", False, "/app"),
        ("/a", "../b", False, "/b"),
        ("/a", "/abs//x/", False, "/abs//x/"),  # absolute paths are kept as written
        ("", "x", False, "/x"),
        ("rel", "x", False, "/rel/x"),
        ("/a", "", False, "/a"),
        ("/a", "dir/", True, "/a/dir/"),
        ("/a", "./", True, "/a/"),
        ("/", "./", True, "/"),
        ("/a", "x/.", True, "/a/x/."),
    ],
)
def test_normalize_path(parent: str, path: str, keep: bool, expected: str) -> None:
    assert normalize_path(parent, path, keep) == expected


@pytest.mark.parametrize(
    ("text", "test", "interval", "timeout", "start", "start_interval", "retries", "history"),
    [
        (
            "HEALTHCHECK NONE",
            ("NONE",),
            0,
            0,
            0,
            0,
            0,
            "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s "
            "Retries:0}",
        ),
        (
            "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1.5s --start-interval=250ms "
            "--retries=3 CMD curl -f http://localhost/ || exit 1",
            ("CMD-SHELL", "curl -f http://localhost/ || exit 1"),
            30_000_000_000,
            90_000_000_000,
            1_500_000_000,
            250_000_000,
            3,
            "HEALTHCHECK {Test:[CMD-SHELL curl -f http://localhost/ || exit 1] Interval:30s "
            "Timeout:1m30s StartPeriod:1.5s StartInterval:250ms Retries:3}",
        ),
        (
            'HEALTHCHECK --interval=1h CMD ["/bin/check", "-q"]',
            ("CMD", "/bin/check", "-q"),
            3_600_000_000_000,
            0,
            0,
            0,
            0,
            "HEALTHCHECK {Test:[CMD /bin/check -q] Interval:1h0m0s Timeout:0s StartPeriod:0s "
            "StartInterval:0s Retries:0}",
        ),
        ("healthcheck --interval=0s cmd true", ("CMD-SHELL", "true"), 0, 0, 0, 0, 0, None),
    ],
)
def test_healthcheck(
    text, test, interval, timeout, start, start_interval, retries, history
) -> None:
    hc = one(text + "\n")
    assert isinstance(hc, Healthcheck)
    assert (hc.test, hc.interval, hc.timeout, hc.start_period, hc.start_interval, hc.retries) == (
        test,
        interval,
        timeout,
        start,
        start_interval,
        retries,
    )
    if history:
        assert hc.created_by() == history


def test_onbuild_expression() -> None:
    onbuild = one("ONBUILD  COPY . /app\n")
    assert isinstance(onbuild, Onbuild)
    assert onbuild.expression == "COPY . /app"
    heredoc = one("onbuild RUN <<EOF\necho hi\nEOF\n")
    assert heredoc.expression == "RUN <<EOF\necho hi\nEOF"
    # the trigger is only checked when used: BuildKit accepts an unknown one here
    assert one("ONBUILD NOPE x\n").expression == "NOPE x"


def test_copy() -> None:
    copy = one(
        "COPY --from=build --chown=$U:$U --chmod=0644 --link --parents --exclude=*.md "
        "--exclude=tmp a $DIR/b ./dst/\n"
    )
    assert isinstance(copy, Copy)
    assert (copy.from_, copy.link, copy.parents, copy.exclude) == (
        "build",
        True,
        True,
        ("*.md", "tmp"),
    )
    done = copy.expand(ENV)
    assert (done.sources, done.dest, done.chown, done.chmod) == (
        ("a", "/srv/b"),
        "./dst/",
        "app:app",
        "0644",
    )
    assert done.from_ == "build"
    assert done.resolve_dest("/work") == "/work/dst/"
    assert (
        done.created_by()
        == "COPY --parents --chown=app:app --chmod=0644 a /srv/b ./dst/ # buildkit"
    )


def test_copy_json_form_and_dest_forms() -> None:
    copy = one('COPY ["my file", "dir with space/"]\n')
    assert (copy.sources, copy.dest) == (("my file",), "dir with space/")
    assert one("COPY a .\n").resolve_dest("/app") == "/app/"
    assert one("COPY a /abs\n").resolve_dest("/app") == "/abs"


def test_copy_heredoc_sources() -> None:
    copy = one(
        "COPY <<one <<'two' <<-three src /dst/\n"
        'v=$A "$B" \\$A\n'
        "one\n"
        "raw $A\n"
        "two\n"
        "\tchomped $A\n"
        "\tthree\n"
    )
    assert copy.sources == ("src",)
    assert copy.inline == (
        InlineSource("one", 'v=$A "$B" \\$A\n', True),
        InlineSource("two", "raw $A\n", False),
        InlineSource("three", "chomped $A\n", True),
    )
    done = copy.expand(ENV)
    # an unquoted delimiter expands the body (quotes kept, backslash escapes applied)
    assert [s.data for s in done.inline] == ['v=1 "two words" $A\n', "raw $A\n", "chomped 1\n"]
    assert done.created_by() == "COPY src <<one <<two <<three /dst/ # buildkit"


@pytest.mark.parametrize(
    ("chmod", "ok"),
    [
        ("755", True),
        ("0o755", False),
        ("7777", True),
        ("10000", False),
        ("999", False),
        ("u+x", True),
        ("u=rwx,go=rx", True),
        ("+x", True),
        ("x+u", False),
    ],
)
def test_copy_chmod(chmod: str, ok: bool) -> None:
    copy = one(f"COPY --chmod={chmod} a /b\n")
    if ok:
        assert copy.expand({}).chmod == chmod
    else:
        with pytest.raises(BuildError, match="invalid chmod parameter"):
            copy.expand({})


def test_add() -> None:
    add = one(
        "ADD --checksum=sha256:$A --keep-git-dir --unpack=false --link https://x/y.tgz /opt/\n"
    )
    assert isinstance(add, Add)
    assert (add.keep_git_dir, add.unpack, add.link) == (True, False, True)
    done = add.expand(ENV)
    assert done.checksum == "sha256:1"
    assert done.created_by() == "ADD https://x/y.tgz /opt/ # buildkit"
    assert one("ADD a.tar.gz /opt/\n").keep_git_dir is None
    with pytest.raises(BuildError, match="checksum requires HTTP"):
        one("ADD --checksum=sha256:0 local.tgz /opt/\n").expand({})
    with pytest.raises(BuildError, match="multiple sources"):
        one("ADD --checksum=sha256:0 https://a https://b /opt/\n").expand({})
    with pytest.raises(BuildError, match="unknown flag: --from"):
        one("ADD --from=x a b\n")


def test_expansion_error_is_located() -> None:
    df = parse('FROM a\nENV X=1 \\\n  Y="${B:?must be set}"\n', "Dockerfile")
    env = parse_instruction(df.nodes[1], df.escape, "Dockerfile")
    with pytest.raises(BuildError) as info:
        env.expand({})
    assert info.value.line == 2
    assert "B: must be set" in str(info.value)


def test_backtick_escape_in_expansion() -> None:
    df = parse("# escape=`\nFROM a\nWORKDIR C:\\app\\`$A\n")
    workdir = parse_instruction(df.nodes[1], df.escape)
    assert workdir.expand(ENV).path == "C:\\app\\$A"


def test_records_are_frozen_and_compare_by_fields() -> None:
    """``records.record``: only ``__init__`` generated, yet frozen as a dataclass would be."""
    workdir = one("WORKDIR /app\n")
    assert isinstance(workdir, Workdir)
    with pytest.raises(FrozenInstanceError):
        workdir.path = "/other"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        workdir.other = 1  # type: ignore[attr-defined]
    with pytest.raises(FrozenInstanceError):
        del workdir.path  # type: ignore[misc]
    again = replace(workdir, path="/other")
    assert (workdir.path, again.path) == ("/app", "/other")
    assert workdir == one("WORKDIR /app\n") != again
    assert len({KeyValue("a", "b"), KeyValue("a", "b"), KeyValue("a", "c")}) == 2
    assert repr(KeyValue("a", "b")) == "KeyValue(key='a', value='b', legacy=False)"


def test_a_build_imports_no_frozen_dataclass() -> None:
    """A frozen dataclass compiles six methods when imported: the frozen types a build
    loads are ``records.record`` records, which compile only ``__init__`` (issue 18)."""
    code = (
        "import sys\nfrom dataclasses import is_dataclass\n"
        "import dockyard.builder.outputs\n"  # what every build imports
        "print(sorted(f'{c.__module__}.{c.__qualname__}' for n, m in list(sys.modules.items())"
        " if n.startswith('dockyard.') for c in vars(m).values() if isinstance(c, type)"
        " and c.__module__ == n and is_dataclass(c) and c.__dataclass_params__.frozen))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # this tree's dockyard
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
